// Package router owns request classification on the front's hot path: it maps
// a request's method and path to a lane index through an immutable, compiled
// table of "METHOD PATH" routes. Match allocates nothing; a table is rebuilt
// (Compile) whenever the mappings change and swapped in whole.
package router

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Sentinel errors returned (wrapped) by Compile, so that a caller can tell
// bad input from a bug. (Package mapping validates every pattern with
// config.ParsePattern before it compiles, so its users see those messages.)
var (
	ErrInvalidRoute   = errors.New("router: invalid route")
	ErrDuplicateRoute = errors.New("router: duplicate route")
)

// Route maps "METHOD PATH" to a lane index.
type Route struct {
	Method  string // "*" or an uppercase method
	Path    string // starts with "/"; "*" matches any run of characters (including "/" and empty)
	Lane    int    // index of the lane in the supervisor's lane slice
	Dynamic bool   // runtime mapping: dynamic routes are consulted before static ones
}

// String returns the route's pattern as written in the config: "METHOD PATH".
func (r Route) String() string { return r.Method + " " + r.Path }

// Table is an immutable compiled routing table, safe for concurrent use.
//
// Specificity, most specific first: dynamic routes before static ones; within
// each group an exact path before any glob; among globs the longer literal
// prefix (before the first "*"), then more literal characters in total, then a
// specific method before "*", then the earlier route.
type Table struct {
	routes      []Route
	defaultLane int
	dynamic     group
	static      group
}

// target is what a match resolves to.
type target struct {
	lane  int
	route int // index into Table.routes
}

// group holds one specificity group (dynamic or static) in lookup order.
type group struct {
	// exact maps method → path → target for routes with a specific method;
	// anyExact is path → target for method "*". Two levels, because indexing
	// a map with string(b) does not allocate, while building method+path does.
	exact    map[string]map[string]target
	anyExact map[string]target

	// Globs sorted most specific first. Those whose literal prefix is longer
	// than "/" are bucketed by the prefix's second byte, and all of them sort
	// before the prefix-"/" globs in short, so scanning bucket then short keeps
	// the specificity order.
	buckets [256][]glob
	short   []glob
	nglobs  int
}

// Compile builds a table. defaultLane is returned when nothing matches. It
// returns an error wrapping ErrInvalidRoute for a malformed route (method not
// "*" or [A-Z]+, path not starting with "/", negative lane), or
// ErrDuplicateRoute when the same method and path appear twice in one group: a
// dynamic route may repeat a static pattern, since overriding it is its point.
func Compile(routes []Route, defaultLane int) (*Table, error) {
	t := &Table{
		routes:      slices.Clone(routes),
		defaultLane: defaultLane,
	}
	type key struct {
		dynamic      bool
		method, path string
	}
	seen := make(map[key]int, len(routes))
	var dynGlobs, staticGlobs []glob
	for i, r := range t.routes {
		if err := validate(r); err != nil {
			return nil, fmt.Errorf("route %d %q: %w", i, r.String(), err)
		}
		k := key{r.Dynamic, r.Method, r.Path}
		if j, ok := seen[k]; ok {
			return nil, fmt.Errorf("route %d %q: %w: same as route %d", i, r.String(), ErrDuplicateRoute, j)
		}
		seen[k] = i

		g := &t.static
		if r.Dynamic {
			g = &t.dynamic
		}
		tg := target{lane: r.Lane, route: i}
		if !strings.Contains(r.Path, "*") {
			g.addExact(r.Method, r.Path, tg)
			continue
		}
		gl := compileGlob(r.Method, r.Path, tg)
		if r.Dynamic {
			dynGlobs = append(dynGlobs, gl)
		} else {
			staticGlobs = append(staticGlobs, gl)
		}
	}
	t.dynamic.setGlobs(dynGlobs)
	t.static.setGlobs(staticGlobs)
	return t, nil
}

func validate(r Route) error {
	if r.Method == "" {
		return fmt.Errorf("%w: empty method", ErrInvalidRoute)
	}
	if r.Method != "*" {
		for i := 0; i < len(r.Method); i++ {
			if c := r.Method[i]; c < 'A' || c > 'Z' {
				return fmt.Errorf("%w: method must be \"*\" or uppercase letters", ErrInvalidRoute)
			}
		}
	}
	if !strings.HasPrefix(r.Path, "/") {
		return fmt.Errorf("%w: path must start with \"/\"", ErrInvalidRoute)
	}
	if r.Lane < 0 {
		return fmt.Errorf("%w: negative lane %d", ErrInvalidRoute, r.Lane)
	}
	return nil
}

func (g *group) addExact(method, path string, tg target) {
	if method == "*" {
		if g.anyExact == nil {
			g.anyExact = make(map[string]target)
		}
		g.anyExact[path] = tg
		return
	}
	if g.exact == nil {
		g.exact = make(map[string]map[string]target)
	}
	m := g.exact[method]
	if m == nil {
		m = make(map[string]target)
		g.exact[method] = m
	}
	m[path] = tg
}

func (g *group) setGlobs(globs []glob) {
	slices.SortFunc(globs, func(a, b glob) int {
		if c := cmp.Compare(len(b.prefix), len(a.prefix)); c != 0 {
			return c
		}
		if c := cmp.Compare(b.literals, a.literals); c != 0 {
			return c
		}
		if a.anyMethod != b.anyMethod {
			if b.anyMethod {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.target.route, b.target.route)
	})
	g.nglobs = len(globs)
	for _, gl := range globs {
		if len(gl.prefix) >= 2 {
			c := gl.prefix[1]
			g.buckets[c] = append(g.buckets[c], gl)
		} else {
			g.short = append(g.short, gl)
		}
	}
}

// match returns the most specific route of the group matching method and path.
func (g *group) match(method, path []byte) (target, bool) {
	// string(b) as a map index does not allocate.
	if tg, ok := g.exact[string(method)][string(path)]; ok {
		return tg, true
	}
	if tg, ok := g.anyExact[string(path)]; ok {
		return tg, true
	}
	if g.nglobs == 0 {
		return target{}, false
	}
	if len(path) >= 2 {
		if tg, ok := matchGlobs(g.buckets[path[1]], method, path); ok {
			return tg, true
		}
	}
	return matchGlobs(g.short, method, path)
}

func matchGlobs(globs []glob, method, path []byte) (target, bool) {
	for i := range globs {
		gl := &globs[i]
		if gl.quickReject(path) {
			continue
		}
		if (gl.anyMethod || gl.method == string(method)) && gl.matchRest(path) {
			return gl.target, true
		}
	}
	return target{}, false
}

// Match returns the lane for a request. method and path are the raw bytes
// from fasthttp (ctx.Method(), ctx.Path(): the path without query string);
// they are only read during the call. Zero allocations.
func (t *Table) Match(method, path []byte) int {
	lane, _ := t.MatchRoute(method, path)
	return lane
}

// MatchRoute is Match that also reports which route matched: its index in the
// routes given to Compile, or -1 when the default lane was returned.
func (t *Table) MatchRoute(method, path []byte) (lane int, route int) {
	if tg, ok := t.dynamic.match(method, path); ok {
		return tg.lane, tg.route
	}
	if tg, ok := t.static.match(method, path); ok {
		return tg.lane, tg.route
	}
	return t.defaultLane, -1
}

// Routes returns a copy of the routes as compiled, in the order given to
// Compile (for the admin API). It is never nil.
func (t *Table) Routes() []Route {
	out := make([]Route, len(t.routes))
	copy(out, t.routes)
	return out
}
