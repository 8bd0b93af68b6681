// Package themepage is what fetchd and the worker agree a theme page may
// be: its bounds (elements, attributes, depth), checked with a streaming
// tokenizer before any DOM is built, and its text as UTF-8. fetchd checks a
// fetched page before it may replace the last good copy; the worker checks
// again before it parses a version, so a cached copy from before a limit
// existed, or a fetchd that lets one through, cannot cost every worker its
// memory.
package themepage

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Limits bound a theme page's shape. A theme is parsed once per version
// but cloned, matched and rendered for every themed response, so its node
// count is paid per request and per worker: a 3.2 MB page of 400,000
// elements made each worker grow to 460 MB and 40 % of requests 503.
type Limits struct {
	// MaxElements bounds start tags and comments, each a node of the DOM.
	// Text nodes need no limit of their own: there is at most one between
	// two tags.
	MaxElements int
	// MaxAttributes bounds attributes over the whole page: "<a a a a ...>"
	// is one element with as many attributes as the page has bytes.
	MaxAttributes int
	// MaxDepth bounds element nesting. Everything that walks the tree
	// (clone, render, selector matching) recurses, and x/net/html refuses
	// pages nested past 512.
	MaxDepth int
	// MaxNodes bounds the parsed tree itself, text nodes and the elements
	// the HTML parser adds (implied html, head, body, reopened formatting
	// elements) included. It is checked after a parse: the tokenizer cannot
	// see what the parser adds.
	MaxNodes int
}

// Default are the limits fetchd and the worker apply.
//
// 20,000 elements is 13 times the 1,500 at which Lighthouse calls a page's
// DOM excessive and about 4 times the largest real home pages measured
// (news portals, 4,000–5,000 elements); depth 256 is 8 times Lighthouse's
// 32 and half of x/net/html's own 512. At these limits a parsed theme
// holds at most ~60,000 nodes (136 bytes each), 100,000 attributes
// (48 bytes each) and its strings (at most the page, 4 MiB): about 17 MiB
// once, and a per-request clone of at most 8 MiB (attributes and strings
// are shared) — TestParsedThemeMemory measures it.
var Default = Limits{MaxElements: 20_000, MaxAttributes: 100_000, MaxDepth: 256, MaxNodes: 60_000}

// ErrTooLarge is a page past its Limits.
var ErrTooLarge = errors.New("theme page too large")

// Stats is what Scan counted.
type Stats struct {
	Elements   int // start tags and comments
	Attributes int
	Depth      int // deepest element nesting, as the tokenizer sees it
}

// Scan counts page's elements, attributes and nesting with a streaming
// tokenizer, without building a DOM, and fails with an error wrapping
// ErrTooLarge at the first limit passed. Its depth follows end tags to the
// element they close and the few tags that close an open sibling of their
// own kind (p, li, td, ...), so real pages that leave those unclosed are
// not counted as deep.
func Scan(page []byte, lim Limits) (Stats, error) {
	var st Stats
	z := html.NewTokenizer(bytes.NewReader(page))
	stack := make([]atom.Atom, 0, 64)
	names := make([]string, 0, 8) // names of open elements html has no atom for
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if err := z.Err(); err != io.EOF {
				return st, err
			}
			return st, nil
		case html.CommentToken:
			st.Elements++
		case html.StartTagToken, html.SelfClosingTagToken:
			st.Elements++
			name, hasAttr := z.TagName()
			for hasAttr {
				_, _, hasAttr = z.TagAttr()
				st.Attributes++
			}
			a := atom.Lookup(name)
			if tt == html.StartTagToken && !void(a) {
				if n := len(stack); n > 0 && a != 0 && stack[n-1] == a && closesSibling(a) {
					stack = stack[:n-1]
				}
				stack = append(stack, a)
				if a == 0 {
					names = append(names, string(name))
				}
				st.Depth = max(st.Depth, len(stack))
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			a := atom.Lookup(name)
			// Close the innermost open element of that name, and whatever
			// is still open inside it; an end tag nothing matches is
			// ignored, as the parser does.
			unknown := len(names)
			for i := len(stack) - 1; i >= 0; i-- {
				if stack[i] == 0 {
					unknown--
				}
				if stack[i] == a && (a != 0 || names[unknown] == string(name)) {
					stack = stack[:i]
					names = names[:unknown]
					break
				}
			}
		}
		switch {
		case st.Elements > lim.MaxElements:
			return st, fmt.Errorf("%w: more than %d elements", ErrTooLarge, lim.MaxElements)
		case st.Attributes > lim.MaxAttributes:
			return st, fmt.Errorf("%w: more than %d attributes", ErrTooLarge, lim.MaxAttributes)
		case st.Depth > lim.MaxDepth:
			return st, fmt.Errorf("%w: elements nested deeper than %d", ErrTooLarge, lim.MaxDepth)
		}
	}
}

// CheckNodes fails when a parsed tree of n nodes is past lim.MaxNodes.
func CheckNodes(n int, lim Limits) error {
	if n > lim.MaxNodes {
		return fmt.Errorf("%w: %d nodes once parsed, more than %d", ErrTooLarge, n, lim.MaxNodes)
	}
	return nil
}

// void reports whether a is an element without content: its start tag
// opens nothing.
func void(a atom.Atom) bool {
	switch a {
	case atom.Area, atom.Base, atom.Br, atom.Col, atom.Embed, atom.Hr, atom.Img,
		atom.Input, atom.Keygen, atom.Link, atom.Meta, atom.Param, atom.Source,
		atom.Track, atom.Wbr, atom.Basefont, atom.Bgsound, atom.Frame:
		return true
	}
	return false
}

// closesSibling reports whether a start tag of a closes an open element of
// its own kind (the HTML parser's implied end tags).
func closesSibling(a atom.Atom) bool {
	switch a {
	case atom.P, atom.Li, atom.Dt, atom.Dd, atom.Option, atom.Optgroup,
		atom.Tr, atom.Td, atom.Th, atom.Thead, atom.Tbody, atom.Tfoot,
		atom.Rb, atom.Rt, atom.Rp, atom.Rtc:
		return true
	}
	return false
}
