package router

import (
	"bytes"
	"strings"
)

// glob is a compiled path pattern containing at least one "*".
//
// The pattern is split at its stars into a literal prefix, a literal suffix
// and the literal segments between. Because "*" is the only wildcard, the
// classic greedy backtracking matcher reduces to: the prefix and the suffix
// are anchored, and each middle segment is taken at its leftmost occurrence
// after the previous one (a later occurrence can never help, since the stars
// on both sides absorb anything). So no backtracking is needed, and the
// matcher is non-recursive and allocation-free.
type glob struct {
	// minLen and last come first: they reject most candidates in a scan
	// without touching the rest of the struct.
	minLen    int    // total literal length: a shorter path cannot match
	last      int    // the pattern's last byte when it is a literal, else -1
	method    string // uppercase method, or "" when anyMethod
	anyMethod bool
	prefix    []byte   // literal before the first "*"; at least "/"
	suffix    []byte   // literal after the last "*"
	middle    [][]byte // non-empty literals between stars, in order
	literals  int      // literal (non-"*") characters, for specificity
	target    target
}

func compileGlob(method, pattern string, tg target) glob {
	parts := strings.Split(pattern, "*") // at least two: pattern has a star
	g := glob{
		method:    method,
		anyMethod: method == "*",
		prefix:    []byte(parts[0]),
		suffix:    []byte(parts[len(parts)-1]),
		target:    tg,
	}
	if g.anyMethod {
		g.method = ""
	}
	g.minLen = len(g.prefix) + len(g.suffix)
	for _, p := range parts[1 : len(parts)-1] {
		if p == "" { // consecutive stars
			continue
		}
		g.middle = append(g.middle, []byte(p))
		g.minLen += len(p)
	}
	g.literals = g.minLen
	g.last = -1
	if len(g.suffix) > 0 {
		g.last = int(g.suffix[len(g.suffix)-1])
	}
	return g
}

// quickReject reports cheaply that path cannot match: it is too short or
// ends in the wrong byte.
func (g *glob) quickReject(path []byte) bool {
	n := len(path)
	return n < g.minLen || (g.last >= 0 && int(path[n-1]) != g.last) // minLen >= 1, so n >= 1
}

// match reports whether path matches the whole pattern.
func (g *glob) match(path []byte) bool {
	return !g.quickReject(path) && g.matchRest(path)
}

// matchRest is match for a path that quickReject has already let through;
// a scan calls quickReject first, on its own, to skip the method compare.
func (g *glob) matchRest(path []byte) bool {
	if !bytes.HasPrefix(path, g.prefix) || !bytes.HasSuffix(path, g.suffix) {
		return false
	}
	rest := path[len(g.prefix) : len(path)-len(g.suffix)]
	for _, seg := range g.middle {
		i := bytes.Index(rest, seg)
		if i < 0 {
			return false
		}
		rest = rest[i+len(seg):]
	}
	return true
}
