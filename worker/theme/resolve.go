package theme

import (
	"bytes"
	"slices"

	"github.com/andybalholm/cascadia"
)

// streamPlan is what the streaming pass needs of the rules, fixed in New.
type streamPlan struct {
	reason string              // why every request takes the DOM path; "" when none
	keys   []string            // attribute names some selector reads
	drops  []cascadia.Selector // content drop selectors
	title  bool                // a title rule takes the content's <title>
}

func planRules(rules []rule) streamPlan {
	var p streamPlan
	add := func(keys []string) {
		for _, k := range keys {
			if !slices.Contains(p.keys, k) {
				p.keys = append(p.keys, k)
			}
		}
	}
	for _, r := range rules {
		if r.content != nil {
			if !r.contentSel.ok {
				p.reason = "content selector of " + r.desc + " is not streamable"
				return p
			}
			add(r.contentSel.keys)
			if r.kind == kindDrop {
				p.drops = append(p.drops, r.content)
			}
		}
		if r.theme != nil && r.themeSel.ok {
			add(r.themeSel.keys)
		}
		if r.kind == kindTitle {
			p.title = true
		}
	}
	return p
}

// seg is a part of a themed hole: a range of the streamer's buffer, or
// literal bytes.
type seg struct {
	a, b int
	lit  []byte
}

// hole is what a request puts in one target: its replaced content (nil
// when the theme's own stays) and what is appended to it.
type hole struct {
	replaced bool
	repl     []seg
	app      []seg
}

// renderStream themes content with the streaming pass; errFallback sends
// the request to the DOM path.
func (f *Filter) renderStream(out *buffer, th *parsed, content []byte) error {
	tp := th.tmpl
	if tp == nil || f.plan.reason != "" {
		return errFallback
	}
	if bytes.IndexByte(content, 0) >= 0 {
		return errFallback // the parser drops or replaces NUL by context
	}
	s := streamPool.Get().(*streamer) //nolint:forcetypeassert
	defer func() {
		s.reset()
		s.f, s.tp = nil, nil
		if cap(s.buf) <= maxPooled {
			streamPool.Put(s)
		}
	}()
	s.reset()
	s.f, s.tp = f, tp
	s.dMask = 0
	for _, d := range tp.danger {
		s.dMask |= d
	}
	if err := s.stream(content); err != nil {
		return err
	}
	return f.assemble(out, tp, s)
}

// assemble applies the rules, in config order, to what the pass took, as
// the DOM path applies them to the trees.
func (f *Filter) assemble(out *buffer, tp *template, s *streamer) error {
	cands := s.cands
	// takesContent.
	replaces, found := false, false
	for i, r := range f.rules {
		if r.kind == kindReplace {
			replaces = true
			for _, c := range cands {
				if c.bits&(1<<i) != 0 {
					found = true
					break
				}
			}
		}
	}
	if replaces && !found {
		return errNotAPage
	}
	var moved [][2]int // buffer ranges now in the theme
	inMoved := func(off int) bool {
		for _, m := range moved {
			if off >= m[0] && off < m[1] {
				return true
			}
		}
		return false
	}
	// take returns [a,b) less what earlier rules moved out of it, and
	// marks it moved.
	take := func(a, b int) []seg {
		var out []seg
		at := a
		var in [][2]int
		for _, m := range moved {
			if m[0] >= a && m[1] <= b {
				in = append(in, m)
			}
		}
		// Ranges nest or are apart: by start, the larger first.
		slices.SortFunc(in, func(x, y [2]int) int {
			if x[0] != y[0] {
				return x[0] - y[0]
			}
			return y[1] - x[1]
		})
		for _, m := range in {
			if m[0] < at {
				continue // inside one already cut
			}
			out = append(out, seg{a: at, b: m[0]})
			at = m[1]
		}
		out = append(out, seg{a: at, b: b})
		moved = append(moved, [2]int{a, b})
		return out
	}
	// dangerous reports whether a range moved by rule j holds an element
	// a later rule's theme selector might take for its target.
	dangerous := func(j, a, b int) bool {
		if tp.danger[j] == 0 {
			return false
		}
		for _, m := range s.marks {
			if m.off >= a && m.off < b && m.bits&tp.danger[j] != 0 {
				return true
			}
		}
		return false
	}
	holes := make([]hole, tp.targets)
	for i, r := range f.rules {
		t := tp.ruleT[i]
		switch r.kind {
		case kindReplace:
			if t < 0 {
				continue
			}
			ci := -1
			for k, c := range cands {
				if c.bits&(1<<i) != 0 && !inMoved(c.start) {
					ci = k
					break
				}
			}
			if ci < 0 {
				continue
			}
			c := cands[ci]
			if noTarget[c.atom] {
				return errFallback // raw text or a kept newline: renders otherwise in the theme
			}
			if dangerous(i, c.innerStart, c.innerEnd) {
				return errFallback
			}
			holes[t] = hole{replaced: true, repl: take(c.innerStart, c.innerEnd)}
		case kindTitle:
			if t < 0 {
				continue
			}
			ci := -1
			for k, c := range cands {
				if c.title && !inMoved(c.start) {
					ci = k
					break
				}
			}
			if ci < 0 {
				continue
			}
			c := cands[ci]
			text := seg{a: c.innerStart, b: c.innerEnd}
			if tp.titleNew {
				holes[t].app = append(holes[t].app, seg{lit: []byte("<title>")}, text, seg{lit: []byte("</title>")})
			} else {
				holes[t] = hole{replaced: true, repl: []seg{text}}
			}
		case kindAppend:
			if t < 0 {
				continue
			}
			last := -1 // end of the last element taken: its descendants go with it
			for _, c := range cands {
				if c.bits&(1<<i) == 0 || c.start < last || inMoved(c.start) {
					continue
				}
				if dangerous(i, c.start, c.end) {
					return errFallback
				}
				holes[t].app = append(holes[t].app, take(c.start, c.end)...)
				last = c.end
			}
		}
	}
	buf := s.buf
	write := func(segs []seg) {
		for _, g := range segs {
			if g.lit != nil {
				out.B = append(out.B, g.lit...)
			} else {
				out.B = append(out.B, buf[g.a:g.b]...)
			}
		}
	}
	items := tp.items
	for k := 0; k < len(items); k++ {
		it := items[k]
		switch {
		case it.lit != nil:
			out.B = append(out.B, it.lit...)
		case !it.end:
			if h := &holes[it.target]; h.replaced {
				write(h.repl)
				for k+1 < len(items) && !(items[k+1].lit == nil && items[k+1].end && items[k+1].target == it.target) {
					k++
				}
			}
		default:
			write(holes[it.target].app)
		}
	}
	return nil
}
