package theme

import (
	"bytes"
	"cmp"
	"errors"
	"slices"
	"sync"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// The streaming pass: the content page is read once with html.Tokenizer,
// and only the elements the rules take are rendered, into one buffer in
// which every taken element is a byte range. A small tree builder follows
// the HTML parser exactly for pages as they are usually written (explicit
// html, head and body or their implied forms, elements closed in order,
// table rows with or without their tbody); anything where x/net/html's
// parser would rearrange the tree (a <div> that closes an open <p>, an
// unclosed <li> before the next, misnested formatting tags,
// foster-parented table content, foreign content, <select>...) stops the
// pass, and the request takes the DOM path. The output is the DOM path's,
// byte for byte: the differential tests hold the two against each other.

// errFallback sends a request to the DOM path.
var errFallback = errors.New("theme: streaming pass cannot follow this page")

// maxStreamDepth is under the parser's 512: deeper pages take the DOM
// path, which fails them as before.
const maxStreamDepth = 500

// Insertion modes the tree builder knows.
const (
	mBeforeHTML = iota
	mBeforeHead
	mInHead
	mAfterHead
	mBody
	mAfterBody
)

// open is an element on the stack.
type open struct {
	atom     atom.Atom
	name     string
	attrMark int  // len(attrs) before its own
	cand     int  // index in cands, or -1
	render   bool // rendered: itself or an ancestor is taken
	dropRoot bool // a content drop rule removes it
	kids     bool // has a child node (the parser's FirstChild != nil)
}

// cand is an element some rule may take: its byte ranges in the buffer.
type cand struct {
	start, innerStart, innerEnd, end int
	bits                             uint64 // rules whose content selector matches it
	title                            bool
	atom                             atom.Atom
}

// mark is an element that a later rule's theme selector might match once
// moved into the theme (see template.danger).
type mark struct {
	off  int
	bits uint64
}

// streamer is one request's pass; pooled.
type streamer struct {
	f     *Filter
	tp    *template
	z     *html.Tokenizer
	doc   html.Node
	nodes []html.Node // open elements as nodes, for cascadia
	stack []open
	attrs []html.Attribute
	raw   [][2][]byte // the current tag's attributes
	name  []byte      // the current tag's name
	buf   []byte      // the rendered elements the rules may take
	cands []cand
	marks []mark
	mode  int
	drop  int // open dropped subtrees
	dMask uint64
	// strs interns attribute values and tag names across the requests
	// that reuse this streamer: pages repeat their classes.
	strs map[string]string
}

// Bounds of streamer.strs.
const (
	maxInterned    = 1024
	maxInternedLen = 64
)

func (s *streamer) intern(b []byte) string {
	if v, ok := s.strs[string(b)]; ok {
		return v
	}
	v := string(b)
	if len(b) <= maxInternedLen {
		if len(s.strs) >= maxInterned {
			clear(s.strs)
		}
		s.strs[v] = v
	}
	return v
}

var streamPool = sync.Pool{New: func() any {
	return &streamer{nodes: make([]html.Node, 0, maxStreamDepth+1), stack: make([]open, 0, maxStreamDepth+1),
		strs: make(map[string]string)}
}}

func (s *streamer) reset() {
	s.doc = html.Node{Type: html.DocumentNode}
	clear(s.nodes) // pop zeroes what it takes off; this is what a fallback left
	s.nodes = s.nodes[:0]
	s.stack = s.stack[:0]
	clear(s.attrs)
	s.attrs = s.attrs[:0]
	s.buf = s.buf[:0]
	s.cands = s.cands[:0]
	s.marks = s.marks[:0]
	s.mode = mBeforeHTML
	s.drop = 0
	s.z = nil
}

// stream runs the pass over content (UTF-8, no NUL).
func (s *streamer) stream(content []byte) error {
	s.z = html.NewTokenizer(bytes.NewReader(content))
	for {
		tt := s.z.Next()
		var err error
		switch tt {
		case html.ErrorToken:
			return s.eof()
		case html.TextToken:
			err = s.text(s.z.Text())
		case html.CommentToken:
			err = s.comment(s.z.Text())
		case html.DoctypeToken:
		case html.StartTagToken, html.SelfClosingTagToken:
			name := s.tagName(1)
			s.raw = s.raw[:0]
			for more := true; more; {
				var k, v []byte
				if k, v, more = s.z.TagAttr(); k != nil {
					s.raw = append(s.raw, [2][]byte{k, v})
				}
			}
			err = s.start(name, atom.Lookup(name))
		case html.EndTagToken:
			name := s.tagName(2)
			err = s.end(name, atom.Lookup(name))
		}
		if err != nil {
			return err
		}
	}
}

// tagName is the tokenizer's TagName read from the raw tag ("<" or "</"
// is skip bytes long) into a scratch buffer: TagName copies every name.
// The name ends as the tokenizer's readTagName ends it; NUL, which it
// would replace, never reaches the pass.
func (s *streamer) tagName(skip int) []byte {
	raw := s.z.Raw()
	s.name = s.name[:0]
	for _, c := range raw[min(skip, len(raw)):] {
		switch c {
		case ' ', '\n', '\r', '\t', '\f', '/', '>':
			return s.name
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		s.name = append(s.name, c)
	}
	return s.name
}

func (s *streamer) top() *open { return &s.stack[len(s.stack)-1] }

func (s *streamer) has(a atom.Atom) bool {
	for i := range s.stack {
		if s.stack[i].atom == a {
			return true
		}
	}
	return false
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

func wsPrefix(d []byte) int {
	i := 0
	for i < len(d) && isWS(d[i]) {
		i++
	}
	return i
}

// text follows a text token through the insertion modes.
func (s *streamer) text(d []byte) error {
	for {
		switch s.mode {
		case mBeforeHTML, mBeforeHead, mAfterHead:
			// Whitespace is ignored, or goes to <html>: never rendered.
			if d = d[wsPrefix(d):]; len(d) == 0 {
				return nil
			}
			if err := s.implied(); err != nil {
				return err
			}
		case mInHead:
			if s.top().atom != atom.Head {
				s.insertText(d) // <title>, <style>...: their text
				return nil
			}
			n := wsPrefix(d)
			if n > 0 {
				s.insertText(d[:n])
			}
			if d = d[n:]; len(d) == 0 {
				return nil
			}
			s.pop()
			s.mode = mAfterHead
		default:
			if s.mode == mAfterBody && wsPrefix(d) < len(d) {
				s.mode = mBody
			}
			switch t := s.top(); t.atom {
			case atom.Table, atom.Tbody, atom.Thead, atom.Tfoot, atom.Tr, atom.Colgroup:
				if wsPrefix(d) < len(d) {
					return errFallback // foster parenting
				}
			case atom.Pre, atom.Listing, atom.Textarea:
				if !t.kids && len(d) > 0 && d[0] == '\n' {
					d = d[1:]
				}
			}
			if len(d) > 0 {
				s.insertText(d)
			}
			return nil
		}
	}
}

// implied pushes the element the current mode implies (html, head or
// body) and moves to the next mode.
func (s *streamer) implied() error {
	s.raw = s.raw[:0]
	switch s.mode {
	case mBeforeHTML:
		s.mode = mBeforeHead
		return s.push(atom.Html, nil, false)
	case mBeforeHead:
		s.mode = mInHead
		return s.push(atom.Head, nil, false)
	case mAfterHead:
		s.mode = mBody
		return s.push(atom.Body, nil, false)
	}
	return errFallback
}

func (s *streamer) insertText(d []byte) {
	t := s.top()
	if t.render && s.drop == 0 {
		if !t.kids && d[0] == '\n' {
			switch t.atom {
			case atom.Pre, atom.Listing, atom.Textarea:
				s.buf = append(s.buf, '\n')
			}
		}
		if literal(t.atom) {
			s.buf = append(s.buf, d...)
		} else {
			s.buf = appendEscaped(s.buf, d)
		}
	}
	t.kids = true
}

func (s *streamer) comment(d []byte) error {
	switch s.mode {
	case mInHead, mBody:
		t := s.top()
		if t.render && s.drop == 0 {
			s.buf = append(s.buf, "<!--"...)
			s.buf = appendCommentEscaped(s.buf, d)
			s.buf = append(s.buf, "-->"...)
		}
		t.kids = true
	}
	// Elsewhere a comment goes to the document or <html>, neither of
	// which is ever rendered.
	return nil
}

// start follows a start tag through the insertion modes.
func (s *streamer) start(name []byte, a atom.Atom) error {
	for {
		switch s.mode {
		case mBeforeHTML:
			if a == atom.Html {
				s.mode = mBeforeHead
				return s.push(a, name, false)
			}
		case mBeforeHead:
			switch a {
			case atom.Html:
				return errFallback
			case atom.Head:
				s.mode = mInHead
				return s.push(a, name, false)
			}
		case mInHead:
			switch a {
			case atom.Html, atom.Head, atom.Template, atom.Basefont, atom.Bgsound:
				return errFallback
			case atom.Base, atom.Link, atom.Meta:
				return s.push(a, name, true)
			case atom.Title, atom.Style, atom.Script, atom.Noframes, atom.Noscript:
				return s.push(a, name, false)
			}
			s.pop()
			s.mode = mAfterHead
			continue
		case mAfterHead:
			switch a {
			case atom.Body:
				s.mode = mBody
				return s.push(a, name, false)
			case atom.Html, atom.Head, atom.Frameset, atom.Base, atom.Basefont, atom.Bgsound, atom.Link,
				atom.Meta, atom.Noframes, atom.Script, atom.Style, atom.Template, atom.Title:
				return errFallback
			}
		case mAfterBody:
			s.mode = mBody
			continue
		case mBody:
			return s.bodyStart(name, a)
		}
		raw := s.raw
		s.raw = nil
		if err := s.implied(); err != nil {
			return err
		}
		s.raw = raw
	}
}

// bodyStart is a start tag in body, or in table, row or cell.
func (s *streamer) bodyStart(name []byte, a atom.Atom) error {
	switch s.top().atom {
	case atom.Table:
		switch a {
		case atom.Caption, atom.Colgroup, atom.Tbody, atom.Thead, atom.Tfoot, atom.Style, atom.Script:
			return s.push(a, name, false)
		case atom.Tr:
			// <table><tr>: the parser implies a <tbody>.
			raw := s.raw
			s.raw = nil
			if err := s.push(atom.Tbody, nil, false); err != nil {
				return err
			}
			s.raw = raw
			return s.push(a, name, false)
		}
		return errFallback
	case atom.Tbody, atom.Thead, atom.Tfoot:
		switch a {
		case atom.Tr, atom.Style, atom.Script:
			return s.push(a, name, false)
		}
		return errFallback
	case atom.Tr:
		switch a {
		case atom.Td, atom.Th, atom.Style, atom.Script:
			return s.push(a, name, false)
		}
		return errFallback
	case atom.Colgroup:
		if a == atom.Col {
			return s.push(a, name, true)
		}
		return errFallback
	}
	switch a {
	case atom.Html, atom.Body, atom.Head, atom.Frameset, atom.Frame, atom.Template, atom.Svg, atom.Math,
		atom.Image, atom.Plaintext, atom.Select, atom.Menuitem, atom.Basefont, atom.Bgsound, atom.Caption,
		atom.Col, atom.Colgroup, atom.Tbody, atom.Td, atom.Tfoot, atom.Th, atom.Thead, atom.Tr:
		return errFallback
	case atom.Base, atom.Link, atom.Meta, atom.Area, atom.Br, atom.Embed, atom.Img, atom.Keygen, atom.Wbr,
		atom.Input, atom.Param, atom.Source, atom.Track:
		return s.push(a, name, true)
	case atom.Hr:
		if s.has(atom.P) {
			return errFallback
		}
		return s.push(a, name, true)
	case atom.Address, atom.Article, atom.Aside, atom.Blockquote, atom.Center, atom.Details, atom.Dialog,
		atom.Dir, atom.Div, atom.Dl, atom.Fieldset, atom.Figcaption, atom.Figure, atom.Footer, atom.Header,
		atom.Hgroup, atom.Main, atom.Menu, atom.Nav, atom.Ol, atom.P, atom.Search, atom.Section, atom.Summary,
		atom.Ul, atom.Pre, atom.Listing, atom.Table, atom.Xmp:
		if s.has(atom.P) {
			return errFallback // closes the open <p>
		}
	case atom.Form:
		if s.has(atom.P) || s.has(atom.Form) {
			return errFallback
		}
	case atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6:
		if s.has(atom.P) || isHeading(s.top().atom) {
			return errFallback
		}
	case atom.Li, atom.Dd, atom.Dt:
		if s.has(atom.P) {
			return errFallback
		}
		for i := len(s.stack) - 1; i >= 0; i-- {
			e := s.stack[i].atom
			if e == atom.Li || ((a == atom.Dd || a == atom.Dt) && (e == atom.Dd || e == atom.Dt)) {
				return errFallback // closes it
			}
			if special[e] && e != atom.Address && e != atom.Div && e != atom.P {
				break
			}
		}
	case atom.Button, atom.A, atom.Nobr:
		if s.has(a) {
			return errFallback
		}
	case atom.Rb, atom.Rtc, atom.Rp, atom.Rt:
		if s.has(atom.Ruby) {
			return errFallback
		}
	case atom.Option, atom.Optgroup:
		if s.top().atom == atom.Option {
			return errFallback
		}
	case atom.B, atom.Big, atom.Code, atom.Em, atom.Font, atom.I, atom.S, atom.Small, atom.Strike, atom.Strong,
		atom.Tt, atom.U:
	default:
		return s.push(a, name, false)
	}
	if isFormatting(a) && len(s.raw) > 1 {
		// The parser sorts a formatting element's attributes (its
		// Noah's Ark clause compares them so), and renders them so.
		slices.SortFunc(s.raw, func(x, y [2][]byte) int {
			return cmp.Or(bytes.Compare(x[0], y[0]), bytes.Compare(x[1], y[1]))
		})
	}
	return s.push(a, name, false)
}

func isFormatting(a atom.Atom) bool {
	switch a {
	case atom.A, atom.B, atom.Big, atom.Code, atom.Em, atom.Font, atom.I, atom.Nobr, atom.S, atom.Small,
		atom.Strike, atom.Strong, atom.Tt, atom.U:
		return true
	}
	return false
}

func isHeading(a atom.Atom) bool {
	switch a {
	case atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6:
		return true
	}
	return false
}

// end follows an end tag.
func (s *streamer) end(name []byte, a atom.Atom) error {
	switch s.mode {
	case mInHead:
		t := s.top()
		if a == atom.Head && t.atom == atom.Head {
			s.pop()
			s.mode = mAfterHead
			return nil
		}
		if a != 0 && t.atom == a && a != atom.Head {
			s.pop() // </title>, </style>...
			return nil
		}
		return errFallback
	case mAfterBody:
		if a == atom.Body || a == atom.Html {
			return nil
		}
		s.mode = mBody
		fallthrough
	case mBody:
		if a == atom.Body || a == atom.Html {
			for i := range s.stack {
				switch s.stack[i].atom {
				case atom.Table, atom.Td, atom.Th, atom.Caption, atom.Applet, atom.Marquee, atom.Object, atom.Template:
					return errFallback // body not in scope: ignored
				}
			}
			s.mode = mAfterBody
			return nil
		}
		t := s.top()
		if a == atom.Table && len(s.stack) > 1 && s.stack[len(s.stack)-2].atom == atom.Table {
			switch t.atom {
			case atom.Tbody, atom.Thead, atom.Tfoot:
				// </table> closes the table's section first, implied
				// or not.
				s.pop()
				t = s.top()
			}
		}
		if a == atom.Br || t.atom != a || (a == 0 && t.name != string(name)) {
			return errFallback // the parser would close or open something
		}
		s.pop()
		return nil
	}
	return errFallback
}

// push opens an element (void: and closes it) with the attributes in s.raw.
func (s *streamer) push(a atom.Atom, name []byte, void bool) error {
	if len(s.stack) >= maxStreamDepth {
		return errFallback
	}
	f := s.f
	e := open{atom: a, attrMark: len(s.attrs), cand: -1}
	if a != 0 {
		e.name = a.String()
	} else {
		e.name = s.intern(name)
	}
	for _, kv := range s.raw {
		for _, k := range f.plan.keys {
			if string(kv[0]) == k {
				s.attrs = append(s.attrs, html.Attribute{Key: k, Val: s.intern(kv[1])})
				break
			}
		}
	}
	parent := &s.doc
	var up *open
	if n := len(s.nodes); n > 0 {
		parent = &s.nodes[n-1]
		up = &s.stack[n-1]
		up.kids = true
		e.render = up.render
	}
	s.nodes = append(s.nodes, html.Node{Type: html.ElementNode, DataAtom: a, Data: e.name, Parent: parent,
		Attr: s.attrs[e.attrMark:len(s.attrs):len(s.attrs)]})
	node := &s.nodes[len(s.nodes)-1]
	if s.drop == 0 {
		for _, d := range f.plan.drops {
			if d.Match(node) {
				e.dropRoot = true
				s.drop++
				break
			}
		}
	}
	if s.drop == 0 {
		var bits uint64
		for i, r := range f.rules {
			if (r.kind == kindReplace || r.kind == kindAppend) && r.content.Match(node) {
				bits |= 1 << i
			}
		}
		title := a == atom.Title && f.plan.title
		if bits != 0 || title {
			if a == atom.Html {
				return errFallback
			}
			e.cand = len(s.cands)
			s.cands = append(s.cands, cand{start: len(s.buf), bits: bits, title: title, atom: a})
			e.render = true
		}
		if e.render && s.dMask != 0 {
			var mb uint64
			for i, l := range s.tp.last {
				if l != nil && l.Match(node) {
					mb |= 1 << i
				}
			}
			if mb != 0 {
				s.marks = append(s.marks, mark{off: len(s.buf), bits: mb})
			}
		}
		if e.render {
			s.buf = append(s.buf, '<')
			s.buf = append(s.buf, e.name...)
			for _, kv := range s.raw {
				s.buf = append(s.buf, ' ')
				s.buf = append(s.buf, kv[0]...)
				s.buf = append(s.buf, '=', '"')
				s.buf = appendEscaped(s.buf, kv[1])
				s.buf = append(s.buf, '"')
			}
			if void {
				s.buf = append(s.buf, '/', '>')
			} else {
				s.buf = append(s.buf, '>')
			}
		}
	} else {
		e.render = false
	}
	if e.cand >= 0 {
		c := &s.cands[e.cand]
		c.innerStart = len(s.buf)
		c.innerEnd = len(s.buf)
		c.end = len(s.buf)
	}
	s.stack = append(s.stack, e)
	if void {
		s.stack = s.stack[:len(s.stack)-1]
		s.nodes[len(s.nodes)-1] = html.Node{}
		s.nodes = s.nodes[:len(s.nodes)-1]
		clear(s.attrs[e.attrMark:])
		s.attrs = s.attrs[:e.attrMark]
		if e.dropRoot {
			s.drop--
		}
	}
	return nil
}

func (s *streamer) pop() {
	e := &s.stack[len(s.stack)-1]
	if e.render && s.drop == 0 {
		if e.cand >= 0 {
			s.cands[e.cand].innerEnd = len(s.buf)
		}
		s.buf = append(s.buf, '<', '/')
		s.buf = append(s.buf, e.name...)
		s.buf = append(s.buf, '>')
		if e.cand >= 0 {
			s.cands[e.cand].end = len(s.buf)
		}
	}
	if e.dropRoot {
		s.drop--
	}
	clear(s.attrs[e.attrMark:])
	s.attrs = s.attrs[:e.attrMark]
	s.stack = s.stack[:len(s.stack)-1]
	s.nodes[len(s.nodes)-1] = html.Node{}
	s.nodes = s.nodes[:len(s.nodes)-1]
}

// eof adds the html, head and body elements the parser implies at the
// end of the page, and closes what is open, as the parser leaves it.
func (s *streamer) eof() error {
	for s.mode < mBody {
		if s.mode == mInHead {
			for s.top().atom != atom.Head {
				s.pop() // an unclosed <title>, <style>...
			}
			s.pop()
			s.mode = mAfterHead
			continue
		}
		if err := s.implied(); err != nil {
			return err
		}
	}
	for len(s.stack) > 0 {
		s.pop()
	}
	return nil
}

func literal(a atom.Atom) bool {
	switch a {
	case atom.Iframe, atom.Noembed, atom.Noframes, atom.Noscript, atom.Plaintext, atom.Script, atom.Style, atom.Xmp:
		return true
	}
	return false
}

// appendEscaped is html.Render's escaping of text and attribute values.
func appendEscaped(b, s []byte) []byte {
	for {
		i := bytes.IndexAny(s, "&'<>\"\r")
		if i < 0 {
			return append(b, s...)
		}
		b = append(b, s[:i]...)
		switch s[i] {
		case '&':
			b = append(b, "&amp;"...)
		case '\'':
			b = append(b, "&#39;"...)
		case '<':
			b = append(b, "&lt;"...)
		case '>':
			b = append(b, "&gt;"...)
		case '"':
			b = append(b, "&#34;"...)
		case '\r':
			b = append(b, "&#13;"...)
		}
		s = s[i+1:]
	}
}

// appendCommentEscaped is html.Render's escaping of comments: every '&',
// and a '>' at the start or after '!' or '-'.
func appendCommentEscaped(b, s []byte) []byte {
	for j, c := range s {
		switch {
		case c == '&':
			b = append(b, "&amp;"...)
		case c == '>' && (j == 0 || s[j-1] == '!' || s[j-1] == '-'):
			b = append(b, "&gt;"...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// special is the HTML spec's special category, for the <li> rule.
var special = map[atom.Atom]bool{}

func init() {
	for _, a := range []atom.Atom{atom.Address, atom.Applet, atom.Area, atom.Article, atom.Aside, atom.Base,
		atom.Basefont, atom.Bgsound, atom.Blockquote, atom.Body, atom.Br, atom.Button, atom.Caption, atom.Center,
		atom.Col, atom.Colgroup, atom.Dd, atom.Details, atom.Dir, atom.Div, atom.Dl, atom.Dt, atom.Embed,
		atom.Fieldset, atom.Figcaption, atom.Figure, atom.Footer, atom.Form, atom.Frame, atom.Frameset,
		atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Head, atom.Header, atom.Hgroup, atom.Hr,
		atom.Html, atom.Iframe, atom.Img, atom.Input, atom.Keygen, atom.Li, atom.Link, atom.Listing, atom.Main,
		atom.Marquee, atom.Menu, atom.Meta, atom.Nav, atom.Noembed, atom.Noframes, atom.Noscript, atom.Object,
		atom.Ol, atom.P, atom.Param, atom.Plaintext, atom.Pre, atom.Script, atom.Search, atom.Section,
		atom.Select, atom.Source, atom.Style, atom.Summary, atom.Table, atom.Tbody, atom.Td, atom.Template,
		atom.Textarea, atom.Tfoot, atom.Th, atom.Thead, atom.Title, atom.Tr, atom.Track, atom.Ul, atom.Wbr, atom.Xmp} {
		special[a] = true
	}
}
