package theme

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/PuerkitoBio/goquery"
	"github.com/andybalholm/cascadia"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/shared/themepage"
)

// Rule kinds, as config spells them.
const (
	kindReplace = "replace"
	kindTitle   = "title"
	kindAppend  = "append"
	kindDrop    = "drop"
)

// rule is one config rule with its selectors compiled.
//
// Order of work, for every themed response:
//
//  1. drop, theme side: once per theme version, when it is parsed. Theme
//     drops therefore never remove anything the content brings in.
//  2. drop, content side: before any other rule, so dropped content never
//     reaches the theme.
//  3. replace, title and append, in config order. Each takes the first
//     theme element its selector matches; a content node goes to the first
//     rule that takes it. A rule whose selectors match nothing does nothing:
//     the theme element keeps its own content.
//
// A page in which no replace rule finds its content (an HTML fragment for
// a script, a page not made for the theme) is not themed at all: wrapping
// it would show the theme's filler instead of the page. See errNotAPage.
type rule struct {
	kind    string
	desc    string            // for logs: kind and selectors as configured
	theme   cascadia.Selector // nil when not configured
	content cascadia.Selector // nil when not configured

	themeSel, contentSel selInfo // for the streaming pass (stream.go)
}

var (
	selTitle = cascadia.MustCompile("title")
	selHead  = cascadia.MustCompile("head")
)

// compileRules compiles t's rules, once per Filter.
func compileRules(t config.Theme) ([]rule, error) {
	rules := make([]rule, 0, len(t.Rules))
	for i, cr := range t.Rules {
		r := rule{kind: cr.Kind, desc: fmt.Sprintf("%s theme=%q content=%q", cr.Kind, cr.Theme, cr.Content)}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("theme %s: rule %d (%s): %s", t.Name, i+1, cr.Kind, fmt.Sprintf(format, args...))
		}
		var err error
		if cr.Theme != "" {
			if r.theme, err = cascadia.Compile(cr.Theme); err != nil {
				return nil, fail("theme selector %q: %v", cr.Theme, err)
			}
			r.themeSel = analyze(cr.Theme)
		}
		if cr.Content != "" {
			if r.content, err = cascadia.Compile(cr.Content); err != nil {
				return nil, fail("content selector %q: %v", cr.Content, err)
			}
			r.contentSel = analyze(cr.Content)
		}
		switch cr.Kind {
		case kindReplace, kindAppend:
			if r.theme == nil || r.content == nil {
				return nil, fail("needs theme and content selectors")
			}
		case kindDrop:
			if r.theme == nil && r.content == nil {
				return nil, fail("needs a theme or a content selector")
			}
		case kindTitle:
		default:
			return nil, fail("unknown rule kind")
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// prepare applies the theme-side drops to a freshly parsed theme page and
// returns the rules whose theme selector then matches nothing.
func (f *Filter) prepare(root *html.Node) (misses []string) {
	// fetchd hands the page over as UTF-8 whatever it declared, and it is
	// rendered as UTF-8: its <meta charset> must say so.
	themepage.SetMetaUTF8(root)
	doc := goquery.NewDocumentFromNode(root)
	for _, r := range f.rules {
		if r.kind == kindDrop && r.theme != nil {
			doc.FindMatcher(r.theme).Remove()
		}
	}
	for _, r := range f.rules {
		if (r.kind == kindReplace || r.kind == kindAppend) && r.theme.MatchFirst(root) == nil {
			misses = append(misses, r.desc)
		}
	}
	return misses
}

// errNotAPage is a content page in which no replace rule's content selector
// matches: it goes out unthemed.
var errNotAPage = errors.New("theme: no replace rule matches the content")

// render writes the themed page: th's page with content's parts put in by
// the rules. th is not modified; content is parsed here.
func (f *Filter) render(out *buffer, th *parsed, content []byte) error {
	croot, err := html.Parse(bytes.NewReader(content))
	if err != nil {
		return fmt.Errorf("parse content: %w", err)
	}
	cdoc := goquery.NewDocumentFromNode(croot)
	for _, r := range f.rules {
		if r.kind == kindDrop && r.content != nil {
			cdoc.FindMatcher(r.content).Remove()
		}
	}
	if !f.takesContent(croot) {
		return errNotAPage
	}
	troot := clone(th.root, th.nodes)
	tdoc := goquery.NewDocumentFromNode(troot)
	for _, r := range f.rules {
		switch r.kind {
		case kindReplace:
			t := tdoc.FindMatcher(r.theme).First()
			c := cdoc.FindMatcher(r.content).First()
			if t.Length() == 0 || c.Length() == 0 {
				continue
			}
			t.Empty()
			t.AppendSelection(c.Contents())
		case kindTitle:
			c := cdoc.FindMatcher(selTitle).First()
			if c.Length() == 0 {
				continue
			}
			t := tdoc.FindMatcher(selTitle).First()
			if t.Length() == 0 {
				head := tdoc.FindMatcher(selHead).First()
				if head.Length() == 0 {
					continue
				}
				head.AppendNodes(&html.Node{Type: html.ElementNode, DataAtom: atom.Title, Data: "title"})
				t = head.FindMatcher(selTitle).Last()
			}
			t.SetText(c.Text())
		case kindAppend:
			t := tdoc.FindMatcher(r.theme).First()
			if t.Length() == 0 {
				continue
			}
			t.AppendNodes(outermost(r.content.MatchAll(croot))...)
		}
	}
	return html.Render(out, troot)
}

// takesContent reports whether some replace rule finds its content in the
// page, or there is no replace rule.
func (f *Filter) takesContent(croot *html.Node) bool {
	replaces := false
	for _, r := range f.rules {
		if r.kind == kindReplace {
			if r.content.MatchFirst(croot) != nil {
				return true
			}
			replaces = true
		}
	}
	return !replaces
}

// outermost returns the nodes of ns (in document order) that have no
// ancestor in ns: moving an ancestor moves its descendants with it.
func outermost(ns []*html.Node) []*html.Node {
	if len(ns) < 2 {
		return ns
	}
	in := make(map[*html.Node]struct{}, len(ns))
	for _, n := range ns {
		in[n] = struct{}{}
	}
	out := ns[:0]
next:
	for _, n := range ns {
		for p := n.Parent; p != nil; p = p.Parent {
			if _, ok := in[p]; ok {
				continue next
			}
		}
		out = append(out, n)
	}
	return out
}

// countNodes counts n and its descendants.
func countNodes(n *html.Node) int {
	k := 1
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		k += countNodes(c)
	}
	return k
}

// clone deep-copies the tree under src, which has size nodes, into one
// allocation. Attributes are shared with src: nothing in this package
// changes an attribute, and the full slice expression makes an append copy.
// Unlike goquery's Clone it keeps each node's Namespace (SVG, MathML).
func clone(src *html.Node, size int) *html.Node {
	arena := make([]html.Node, 0, size)
	var cp func(s, parent *html.Node) *html.Node
	cp = func(s, parent *html.Node) *html.Node {
		n := html.Node{
			Parent:    parent,
			Type:      s.Type,
			DataAtom:  s.DataAtom,
			Data:      s.Data,
			Namespace: s.Namespace,
			Attr:      s.Attr[:len(s.Attr):len(s.Attr)],
		}
		var d *html.Node
		if len(arena) < cap(arena) {
			arena = append(arena, n)
			d = &arena[len(arena)-1]
		} else { // size was short; never when it comes from countNodes
			d = new(html.Node)
			*d = n
		}
		var prev *html.Node
		for c := s.FirstChild; c != nil; c = c.NextSibling {
			dc := cp(c, d)
			if prev == nil {
				d.FirstChild = dc
			} else {
				prev.NextSibling = dc
				dc.PrevSibling = prev
			}
			prev = dc
		}
		d.LastChild = prev
		return d
	}
	return cp(src, nil)
}
