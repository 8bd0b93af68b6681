package router

import (
	"fmt"
	"testing"
)

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 200} {
		tab, err := Compile(benchRoutes(n), 99)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range []struct {
			name string
			path []byte
		}{
			{"exact", exactPath},
			{"glob", globPath},
			{"miss", missPath},
		} {
			b.Run(fmt.Sprintf("routes=%d/%s", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					tab.Match(getMethod, c.path)
				}
			})
		}
	}
}

func BenchmarkMatchParallel(b *testing.B) {
	tab, err := Compile(benchRoutes(200), 99)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tab.Match(getMethod, globPath)
		}
	})
}

func BenchmarkCompile(b *testing.B) {
	routes := benchRoutes(200)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(routes, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompileLearned measures a table the size auto_map can reach
// (max_entries defaults to 10000): a few config globs plus n exact dynamic
// routes, the shape learned mappings have. supervisor/mapping chooses how
// often to recompile from these figures.
func BenchmarkCompileLearned(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		routes := benchRoutes(50)
		for i := range n {
			routes = append(routes, Route{Method: "GET", Path: fmt.Sprintf("/learned/page/%d", i), Lane: 1, Dynamic: true})
		}
		b.Run(fmt.Sprintf("learned=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Compile(routes, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
