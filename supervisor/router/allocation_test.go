package router

import (
	"fmt"
	"testing"
)

// benchRoutes builds n routes shaped like a real config: exact API paths,
// prefix globs, extension globs, a glob with a star in the middle, a few
// dynamic mappings. There is deliberately no catch-all, so misses reach the
// default lane after scanning everything that could apply.
func benchRoutes(n int) []Route {
	routes := make([]Route, 0, n)
	methods := []string{"GET", "POST", "*"}
	for i := 0; len(routes) < n; i++ {
		m := methods[i%len(methods)]
		var p string
		switch i % 5 {
		case 0:
			p = fmt.Sprintf("/api/v1/resource%d", i)
		case 1:
			p = fmt.Sprintf("/static/%d/*", i)
		case 2:
			p = fmt.Sprintf("/*.ext%d", i)
		case 3:
			p = fmt.Sprintf("/user/*/edit%d", i)
		case 4:
			p = fmt.Sprintf("/report/%d", i)
		}
		routes = append(routes, Route{Method: m, Path: p, Lane: i % 4, Dynamic: i%7 == 6})
	}
	return routes
}

// Requests that hit an exact route, a glob and nothing in benchRoutes(n) for
// any n >= 10.
var (
	getMethod = []byte("GET")
	exactPath = []byte("/api/v1/resource0") // route 0: GET exact
	globPath  = []byte("/user/42/edit3")    // route 3: GET /user/*/edit3
	missPath  = []byte("/no/such/page")
)

func TestMatchAllocations(t *testing.T) {
	tab, err := Compile(benchRoutes(50), 99)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		path      []byte
		wantRoute int
	}{
		{"exact hit", exactPath, 0},
		{"glob hit", globPath, 3},
		{"default", missPath, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, route := tab.MatchRoute(getMethod, tt.path); route != tt.wantRoute {
				t.Fatalf("route %d, want %d: the benchmark would measure the wrong case", route, tt.wantRoute)
			}
			n := testing.AllocsPerRun(1000, func() {
				tab.Match(getMethod, tt.path)
				tab.MatchRoute(getMethod, tt.path)
			})
			if n != 0 {
				t.Errorf("%v allocations per Match, want 0", n)
			}
		})
	}
}
