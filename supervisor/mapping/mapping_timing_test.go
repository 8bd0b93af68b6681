package mapping

import (
	"fmt"
	"testing"
)

// BenchmarkMatch measures Table.Match (router match, hit count, last-hit
// time) with 10,000 learned mappings held, the default max_entries.
func BenchmarkMatch(b *testing.B) {
	s := hotPathSet(b, 10_000).Table()
	for _, c := range []struct {
		name string
		path []byte
	}{
		{"static-glob", pStatic},
		{"catch-all", pCatchAll},
		{"runtime-glob", pRuntime},
		{"learned-exact", pLearned},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Match(mGet, c.path)
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s.Match(mGet, c.path)
				}
			})
		})
	}
}

// BenchmarkObserveFast measures Observe for what almost every request is: a
// fast request matched by a config mapping, and a learned one.
func BenchmarkObserveFast(b *testing.B) {
	s := hotPathSet(b, 10_000).Table()
	for _, c := range []struct {
		name string
		path []byte
	}{
		{"config", pCatchAll},
		{"learned", pLearned},
	} {
		lane, ref := s.Match(mGet, c.path)
		name := s.lanes[lane]
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Observe(ref, name, mGet, c.path, fastRun, false)
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s.Observe(ref, name, mGet, c.path, fastRun, false)
				}
			})
		})
	}
}

// BenchmarkLearn measures learning distinct slow URLs past max_entries:
// learn, evict, and the paced recompiles, per URL.
func BenchmarkLearn(b *testing.B) {
	s := hotPathSet(b, 10_000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Observe(Ref{}, laneName(s, laneDefault), mGet, fmt.Appendf(nil, "/flood/%d", i), 2*threshold, false)
		i++
	}
}

// BenchmarkAddRuntime measures Add of one runtime mapping with n runtime
// mappings held already (issue 15: each add recompiled the whole table, so
// adding them one by one was quadratic). An exact path no longer
// recompiles; a glob still recompiles the router's globs, so its 16,000
// case (minutes of setup) is left out.
func BenchmarkAddRuntime(b *testing.B) {
	for _, n := range []int{0, 1_000, 16_000} {
		for _, kind := range []string{"exact", "glob"} {
			if kind == "glob" && n > 1_000 {
				continue
			}
			b.Run(fmt.Sprintf("%s/held=%d", kind, n), func(b *testing.B) {
				c := testConfig(newClock())
				c.MaxRuntime = n + 1_000_000
				s, err := New(c, nil)
				if err != nil {
					b.Fatal(err)
				}
				suffix := ""
				if kind == "glob" {
					suffix = "/*"
				}
				for i := range n {
					if _, err := s.Add("fast", "GET", fmt.Sprintf("/held/%d%s", i, suffix)); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					// Add then Remove, so that every iteration adds to n held.
					p := fmt.Sprintf("/bench/%d%s", i, suffix)
					if _, err := s.Add("fast", "GET", p); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if err := s.Remove("GET", p); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					i++
				}
			})
		}
	}
}
