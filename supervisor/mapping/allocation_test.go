package mapping

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
)

// hotPathSet is a Set shaped like production: config globs, a few runtime
// mappings and n learned ones.
func hotPathSet(tb testing.TB, learned int) *Set {
	tb.Helper()
	c := testConfig(newClock())
	c.AutoMap.MaxEntries = max(learned, 1)
	s, err := New(c, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.Add("fast", "GET", fmt.Sprintf("/api/v%d/*", i)); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range learned {
		s.Observe(Ref{}, laneName(s, laneDefault), []byte("GET"), fmt.Appendf(nil, "/learned/%d", i), 2*threshold, false)
	}
	s.Flush()
	return s
}

var (
	mGet       = []byte("GET")
	pStatic    = []byte("/static/css/site.css") // config glob, fast lane
	pCatchAll  = []byte("/some/page")           // config "* /*", default lane
	pRuntime   = []byte("/api/v3/users")        // runtime glob
	pLearned   = []byte("/learned/7")           // learned exact
	fastRun    = 20 * time.Millisecond
	slowishRun = threshold * 3 / 4
)

func TestHotPathAllocations(t *testing.T) {
	s := hotPathSet(t, 100)
	noCatchAll := testConfig(newClock())
	noCatchAll.Static = map[string][]config.Pattern{"fast": {{Method: "GET", Path: "/static/*"}}}
	bare := newSet(t, noCatchAll)
	off := testConfig(newClock())
	off.AutoMap = nil
	noAuto := newSet(t, off)

	tests := []struct {
		name   string
		s      *Set
		path   []byte
		run    time.Duration
		source string
	}{
		{"static glob, fast", s, pStatic, fastRun, api.SourceConfig},
		{"catch-all, fast", s, pCatchAll, fastRun, api.SourceConfig},
		{"catch-all, slow but already learned", s, pLearned, 10 * threshold, api.SourceAutoMap},
		{"runtime, slow", s, pRuntime, 10 * threshold, api.SourceAPI},
		{"learned, still slowish", s, pLearned, slowishRun, api.SourceAutoMap},
		{"learned, fast", s, pLearned, fastRun, api.SourceAutoMap},
		{"no mapping, default lane", bare, pCatchAll, fastRun, ""},
		{"auto_map off, slow", noAuto, pCatchAll, 10 * threshold, api.SourceConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ref := tt.s.Match(mGet, tt.path); ref.Source() != tt.source {
				t.Fatalf("matched %q (%s), want a %q mapping: the test measures the wrong case", ref.Pattern(), ref.Source(), tt.source)
			}
			tb := tt.s.Table() // as the supervisor does: the table of its snapshot
			n := testing.AllocsPerRun(1000, func() {
				lane, ref := tb.Match(mGet, tt.path)
				tb.Observe(ref, tb.lanes[lane], mGet, tt.path, tt.run, false)
			})
			if n != 0 {
				t.Errorf("%v allocations per Match+Observe, want 0", n)
			}
		})
	}
}

// Match and Observe run on many goroutines while mappings are added,
// removed, learned, forgotten, evicted and reloaded. Run with -race. Every
// answer must be a lane of one of the configs in play, and a request for a
// path that is mapped in every state must always get its lane.
func TestConcurrentChurn(t *testing.T) {
	clk := newClock()
	c := testConfig(clk)
	c.AutoMap.MaxEntries = 50
	s := newSet(t, c)
	alt := testConfig(clk)
	alt.Lanes = []string{"slow", "fast", "default"} // same names, other order: "fast" stays 1
	alt.AutoMap.MaxEntries = 20

	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var matched atomic.Int64
	for g := range 4 {
		wg.Go(func() {
			paths := [][]byte{pStatic, pCatchAll, pRuntime, []byte("/churn/1"), []byte("/churn/2")}
			for i := 0; ctx.Err() == nil; i++ {
				p := paths[i%len(paths)]
				tb := s.Table()
				lane, ref := tb.Match(mGet, p)
				if lane < 0 || lane > 2 {
					t.Errorf("lane %d", lane)
					return
				}
				if string(p) == string(pStatic) && lane != laneFast {
					t.Errorf("%s went to lane %d mid-churn", p, lane)
					return
				}
				run := fastRun
				if i%7 == 0 {
					run = 2 * threshold
					p = fmt.Appendf(nil, "/flood/%d/%d", g, i)
				}
				tb.Observe(ref, tb.lanes[lane], mGet, p, run, false)
				matched.Add(1)
			}
		})
	}
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			_, _ = s.Add("slow", "GET", "/churn/*")
			_, _ = s.Add("default", "*", fmt.Sprintf("/churn/%d", i%3))
			_ = s.Remove("GET", "/churn/*")
			_ = s.List()
			_ = s.AutoMapStatus()
			clk.Advance(time.Minute)
			s.Sweep(clk.Now())
		}
	})
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			cfg := c
			if i%2 == 1 {
				cfg = alt
			}
			if _, err := s.Reconfigure(cfg, nil); err != nil {
				t.Errorf("reconfigure: %v", err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	wg.Wait()
	s.Flush()
	learned, _, _, entries := s.Counters()
	t.Logf("%d requests, %d learned, %d held", matched.Load(), learned, entries)
	if learned == 0 || entries > 50 {
		t.Errorf("learned %d, holding %d (max 50)", learned, entries)
	}
}
