package theme

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/andybalholm/cascadia"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// template is one theme version compiled for the streaming pass: the
// rendered theme page cut into static chunks at the inner edges of every
// element a rule targets. A request then writes the chunks and, at the
// holes, what the rules took from its content page; the theme is neither
// cloned nor rendered again.
type template struct {
	items   []titem
	targets int   // distinct theme elements the rules target
	ruleT   []int // per rule: its target, or -1 (no target, or a drop)
	// titleT is the title rule's target; titleNew when the theme has no
	// <title> and the rule appends one to head (ruleT is then head's).
	titleNew bool
	// danger[j] holds the rules i > j whose theme selector could pick an
	// element that rule j moves into the theme before i's own target (the
	// DOM path looks the target up after j ran); last[i] is the rightmost
	// compound of i's theme selector, which such an element must match.
	danger []uint64
	last   []cascadia.Selector
}

// titem is a chunk of the rendered theme, or the start or end of a target's
// inner content.
type titem struct {
	lit    []byte
	target int
	end    bool
}

// Tags the streaming pass does not target: their content renders
// differently (raw text, a leading newline kept) or they take no content.
var noTarget = map[atom.Atom]bool{
	atom.Pre: true, atom.Listing: true, atom.Textarea: true, atom.Plaintext: true,
	atom.Script: true, atom.Style: true, atom.Xmp: true, atom.Iframe: true, atom.Noembed: true,
	atom.Noframes: true, atom.Noscript: true, atom.Title: true, atom.Template: true,
	atom.Area: true, atom.Base: true, atom.Br: true, atom.Col: true, atom.Embed: true, atom.Hr: true,
	atom.Img: true, atom.Input: true, atom.Keygen: true, atom.Link: true, atom.Meta: true,
	atom.Param: true, atom.Source: true, atom.Track: true, atom.Wbr: true,
}

const holeMark = "\x00lanes-hole:"

// compileTheme builds the template of a parsed theme (theme drops applied)
// for rules, or says why the version must use the DOM path.
func compileTheme(root *html.Node, rules []rule) (*template, string) {
	if len(rules) > 64 {
		return nil, "more than 64 rules"
	}
	tp := &template{ruleT: make([]int, len(rules)), danger: make([]uint64, len(rules)), last: make([]cascadia.Selector, len(rules))}
	var nodes []*html.Node // distinct targets
	targetOf := func(n *html.Node) int {
		for i, t := range nodes {
			if t == n {
				return i
			}
		}
		nodes = append(nodes, n)
		return len(nodes) - 1
	}
	titles := 0
	for i, r := range rules {
		tp.ruleT[i] = -1
		var t *html.Node
		switch r.kind {
		case kindReplace, kindAppend:
			if !r.contentSel.ok {
				return nil, "content selector " + strconv.Quote(r.desc) + " not streamable"
			}
			t = r.theme.MatchFirst(root)
			if t != nil && (t.Namespace != "" || noTarget[t.DataAtom]) {
				return nil, "rule " + r.desc + " targets <" + t.Data + ">"
			}
		case kindTitle:
			if titles++; titles > 1 {
				return nil, "more than one title rule"
			}
			if t = selTitle.MatchFirst(root); t == nil {
				if t = selHead.MatchFirst(root); t != nil {
					tp.titleNew = true
				}
			}
		case kindDrop:
			if r.content != nil && !r.contentSel.ok {
				return nil, "content selector " + strconv.Quote(r.desc) + " not streamable"
			}
		}
		if t != nil {
			tp.ruleT[i] = targetOf(t)
		}
	}
	// A replace empties its target: a target inside it would be gone.
	for i, r := range rules {
		if r.kind != kindReplace || tp.ruleT[i] < 0 {
			continue
		}
		rt := nodes[tp.ruleT[i]]
		for _, n := range nodes {
			if n != rt && isAncestor(rt, n) {
				return nil, "rule " + r.desc + " replaces an element that holds another rule's target"
			}
		}
	}
	// Render a clone with a marker at both inner edges of every target.
	size := countNodes(root)
	cl := clone(root, size)
	var walk func(s, d *html.Node)
	walk = func(s, d *html.Node) {
		for i, n := range nodes {
			if n == s {
				d.InsertBefore(&html.Node{Type: html.RawNode, Data: holeMark + strconv.Itoa(2*i) + "\x00"}, d.FirstChild)
				d.AppendChild(&html.Node{Type: html.RawNode, Data: holeMark + strconv.Itoa(2*i+1) + "\x00"})
			}
		}
		for sc, dc := s.FirstChild, d.FirstChild; sc != nil; sc, dc = sc.NextSibling, dc.NextSibling {
			for dc != nil && dc.Type == html.RawNode {
				dc = dc.NextSibling
			}
			walk(sc, dc)
		}
	}
	walk(root, cl)
	var b bytes.Buffer
	if err := html.Render(&b, cl); err != nil {
		return nil, "render: " + err.Error()
	}
	page := b.Bytes()
	if bytes.Count(page, []byte(holeMark)) != 2*len(nodes) {
		return nil, "theme page holds the hole marker"
	}
	pos := make([]int, 2*len(nodes)) // item index of each marker
	for len(page) > 0 {
		i := bytes.Index(page, []byte(holeMark))
		if i < 0 {
			tp.items = append(tp.items, titem{lit: page})
			break
		}
		if i > 0 {
			tp.items = append(tp.items, titem{lit: page[:i]})
		}
		rest := page[i+len(holeMark):]
		j := bytes.IndexByte(rest, 0)
		k, err := strconv.Atoi(string(rest[:j]))
		if err != nil || k >= len(pos) {
			return nil, "theme page holds the hole marker"
		}
		pos[k] = len(tp.items)
		tp.items = append(tp.items, titem{target: k / 2, end: k%2 == 1})
		page = rest[j+1:]
	}
	tp.targets = len(nodes)

	// Danger: rule j moves content into the theme before rule i's target
	// (or i has none), so i's theme selector might pick that content.
	for i, r := range rules {
		if r.kind == kindDrop {
			continue
		}
		ti := tp.ruleT[i]
		missing := ti < 0 || (r.kind == kindTitle && tp.titleNew)
		for j := range i {
			rj := rules[j]
			if tp.ruleT[j] < 0 || rj.kind == kindDrop {
				continue
			}
			if r.kind != kindTitle && !r.themeSel.ok {
				// :empty, :last-child, :has(), sibling combinators...
				// can change their answer for the theme's own elements
				// once rule j put content in.
				return nil, fmt.Sprintf("theme selector of %s is not streamable and follows rule %d", r.desc, j+1)
			}
			if rj.kind == kindTitle && !tp.titleNew {
				continue // sets text: no element
			}
			if !missing && pos[2*tp.ruleT[j]+1] > pos[2*ti] {
				continue // inserted after i's target starts
			}
			sel := r.themeSel
			if r.kind == kindTitle {
				sel = analyze("title")
			}
			if !sel.ok {
				return nil, fmt.Sprintf("theme selector of %s may match content rule %d moves, and is not streamable", r.desc, j+1)
			}
			last := cascadia.MustCompile(sel.last)
			if rj.kind == kindTitle {
				// The new <title> itself.
				if last.Match(&html.Node{Type: html.ElementNode, DataAtom: atom.Title, Data: "title"}) {
					return nil, fmt.Sprintf("theme selector of %s may match the title rule's new <title>", r.desc)
				}
				continue
			}
			tp.danger[j] |= 1 << i
			tp.last[i] = last
		}
	}
	return tp, ""
}

// isAncestor reports whether a is a proper ancestor of n.
func isAncestor(a, n *html.Node) bool {
	for p := n.Parent; p != nil; p = p.Parent {
		if p == a {
			return true
		}
	}
	return false
}
