package mapping

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

func counters(s *Set) [4]uint64 {
	l, f, e, n := s.Counters()
	return [4]uint64{l, f, e, uint64(n)}
}

// Observe only ever sees filter+run time: a fast one is never learned,
// however long the request queued; a slow or timed-out one is, once, and
// only from the from lanes.
func TestLearning(t *testing.T) {
	type obs struct {
		method, path string
		lane         int
		filterRun    time.Duration
		timedOut     bool
	}
	tests := []struct {
		name  string
		obs   []obs
		learn bool
	}{
		{"fast", []obs{{"GET", "/a", laneDefault, 10 * time.Millisecond, false}}, false},
		{"at threshold", []obs{{"GET", "/a", laneDefault, threshold, false}}, false},
		{"slow", []obs{{"GET", "/a", laneDefault, threshold + 1, false}}, true},
		{"timed out fast", []obs{{"GET", "/a", laneDefault, 0, true}}, true},
		{"slow twice", []obs{{"GET", "/a", laneDefault, 2 * threshold, false}, {"GET", "/a", laneDefault, 3 * threshold, true}}, true},
		{"slow in fast lane", []obs{{"GET", "/a", laneFast, 2 * threshold, false}}, false},
		{"slow in slow lane", []obs{{"GET", "/a", laneSlow, 2 * threshold, true}}, false},
		{"lane out of range", []obs{{"GET", "/a", 7, 2 * threshold, false}, {"GET", "/a", -1, 2 * threshold, false}}, false},
		{"star in path", []obs{{"GET", "/a*b", laneDefault, 2 * threshold, false}}, false},
		{"blank in path", []obs{{"GET", "/a b", laneDefault, 2 * threshold, false}}, false},
		{"question mark in path", []obs{{"GET", "/a?b", laneDefault, 2 * threshold, false}}, false},
		{"odd method", []obs{{"M-SEARCH", "/a", laneDefault, 2 * threshold, false}}, false},
		{"lowercase method", []obs{{"get", "/a", laneDefault, 2 * threshold, false}}, false},
		{"too long", []obs{{"GET", "/" + string(make([]byte, maxLearnedPath)), laneDefault, 2 * threshold, false}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSet(t, testConfig(newClock()))
			for _, o := range tt.obs {
				_, ref := match(s, o.method, o.path)
				s.Observe(ref, laneName(s, o.lane), []byte(o.method), []byte(o.path), o.filterRun, o.timedOut)
			}
			want := [4]uint64{}
			if tt.learn {
				want = [4]uint64{1, 0, 0, 1}
			}
			if got := counters(s); got != want {
				t.Errorf("counters (learned, forgotten, evicted, entries) %v, want %v", got, want)
			}
			if !tt.learn {
				if n := len(s.List()); n != 4 {
					t.Errorf("%d mappings, want the 4 static ones", n)
				}
				return
			}
			s.Flush()
			o := tt.obs[0]
			wantLane(t, s, o.method, o.path, laneSlow, api.SourceAutoMap)
			wantLane(t, s, o.method, o.path+"/more", laneDefault, api.SourceConfig) // exact path only
		})
	}
}

func TestLearnedRequestIsNotLearnedAgain(t *testing.T) {
	s := newSet(t, testConfig(newClock()))
	learn(s, "GET", "/r")
	s.Flush()
	// Even if the supervisor reported it in a from lane, a request matched
	// by a learned or runtime mapping is not learned again.
	lane, ref := match(s, "GET", "/r")
	s.Observe(ref, laneName(s, laneDefault), []byte("GET"), []byte("/r"), time.Hour, true)
	s.Observe(ref, laneName(s, lane), []byte("GET"), []byte("/r"), time.Hour, true)
	if _, err := s.Add("default", "GET", "/op"); err != nil {
		t.Fatal(err)
	}
	_, ref = match(s, "GET", "/op")
	s.Observe(ref, laneName(s, laneDefault), []byte("GET"), []byte("/op"), time.Hour, true)
	if got := counters(s); got != [4]uint64{1, 0, 0, 1} {
		t.Errorf("counters %v, want one learned", got)
	}
}

func TestFromOmittedMeansAllButTarget(t *testing.T) {
	c := testConfig(newClock())
	c.AutoMap.From = nil
	s := newSet(t, c)
	for i, lane := range []int{laneDefault, laneFast, laneSlow} {
		p := fmt.Sprintf("/p%d", i)
		s.Observe(Ref{}, laneName(s, lane), []byte("GET"), []byte(p), 2*threshold, false)
	}
	if _, _, _, n := s.Counters(); n != 2 {
		t.Errorf("%d learned, want 2 (from default and fast, not from slow)", n)
	}
}

func TestForgetting(t *testing.T) {
	const step = time.Minute
	slowish := threshold / 2 // at least half the threshold: still slow
	fast := threshold/2 - 1
	tests := []struct {
		name      string
		hit       bool          // a request every step
		filterRun time.Duration // how long those requests take
		sweepAt   time.Duration // after learning
		forgotten bool
	}{
		{"never hit, before forget_after", false, 0, forgetAfter, false},
		{"never hit, after forget_after", false, 0, forgetAfter + time.Second, true},
		{"hit but fast ever since", true, fast, forgetAfter + step, true},
		{"hit, fast, not yet forget_after", true, fast, forgetAfter - step, false},
		{"hit and still slow", true, slowish, 3 * forgetAfter, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			s := newSet(t, testConfig(clk))
			learn(s, "GET", "/r")
			s.Flush()
			learnedAt := clk.Now()
			for clk.Now().Sub(learnedAt) < tt.sweepAt {
				clk.Advance(min(step, tt.sweepAt-clk.Now().Sub(learnedAt)))
				if tt.hit {
					lane, ref := match(s, "GET", "/r")
					if ref.Source() != api.SourceAutoMap {
						t.Fatalf("at %s the request took %q", clk.Now().Sub(learnedAt), ref.Pattern())
					}
					s.Observe(ref, laneName(s, lane), []byte("GET"), []byte("/r"), tt.filterRun, false)
				}
				s.Sweep(clk.Now())
			}
			want := [4]uint64{1, 0, 0, 1}
			wantSrc := api.SourceAutoMap
			if tt.forgotten {
				want = [4]uint64{1, 1, 0, 0}
				wantSrc = api.SourceConfig
			}
			if got := counters(s); got != want {
				t.Errorf("counters %v, want %v", got, want)
			}
			_, ref := match(s, "GET", "/r")
			if ref.Source() != wantSrc {
				t.Errorf("matched %s mapping %q, want %s", ref.Source(), ref.Pattern(), wantSrc)
			}
		})
	}
}

func TestTimeoutKeepsLearnedMappingSlow(t *testing.T) {
	clk := newClock()
	s := newSet(t, testConfig(clk))
	learn(s, "GET", "/r")
	s.Flush()
	clk.Advance(forgetAfter - time.Second)
	lane, ref := match(s, "GET", "/r")
	s.Observe(ref, laneName(s, lane), []byte("GET"), []byte("/r"), 0, true)
	clk.Advance(2 * time.Second)
	s.Sweep(clk.Now())
	if _, _, _, n := s.Counters(); n != 1 {
		t.Error("a learned mapping whose request timed out was forgotten as not slow")
	}
}

// A flood of distinct slow URLs keeps max_entries, evicts the least
// recently hit, and recompiles in batches rather than once per URL.
func TestFloodIsBounded(t *testing.T) {
	const (
		maxEntries = 1000
		flood      = 100_000
	)
	clk := newClock()
	c := testConfig(clk)
	c.AutoMap.MaxEntries = maxEntries
	s, err := New(c, nil) // 100k Info lines would only slow the test
	if err != nil {
		t.Fatal(err)
	}
	path := func(i int) []byte { return fmt.Appendf(nil, "/u/%d", i) }

	// Fill, then hit every tenth entry later than the rest.
	for i := range maxEntries {
		s.Observe(Ref{}, laneName(s, laneDefault), []byte("GET"), path(i), 2*threshold, false)
		clk.Advance(time.Millisecond)
	}
	s.Flush()
	clk.Advance(time.Second)
	for i := 0; i < maxEntries; i += 10 {
		if _, ref := s.Match([]byte("GET"), path(i)); ref.Source() != api.SourceAutoMap {
			t.Fatalf("%s not learned", path(i))
		}
	}
	// Half a table more: the evicted must be the 500 coldest, the unhit
	// ones of lowest index.
	for i := maxEntries; i < maxEntries+maxEntries/2; i++ {
		s.Observe(Ref{}, laneName(s, laneDefault), []byte("GET"), path(i), 2*threshold, false)
	}
	s.Flush()
	evicted := 0
	for i := range maxEntries {
		_, ref := s.Match([]byte("GET"), path(i))
		gone := ref.Source() != api.SourceAutoMap
		if gone {
			evicted++
		}
		if i%10 == 0 && gone {
			t.Errorf("%s was hit recently but evicted", path(i))
		}
	}
	if evicted != maxEntries/2 {
		t.Errorf("%d of the first %d evicted, want %d", evicted, maxEntries, maxEntries/2)
	}
	// The coldest: the first 500 never-hit entries in learn order.
	for i, n := 0, 0; n < maxEntries/2; i++ {
		if i%10 == 0 {
			continue
		}
		n++
		if _, ref := s.Match([]byte("GET"), path(i)); ref.Source() == api.SourceAutoMap {
			t.Fatalf("%s survived while a more recent one was evicted", path(i))
		}
	}

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	compiles := s.compiles
	start := time.Now()
	for i := range flood {
		s.Observe(Ref{}, laneName(s, laneDefault), []byte("GET"), path(2*maxEntries+i), 2*threshold, false)
	}
	elapsed := time.Since(start)
	s.Flush()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)

	learned, _, ev, entries := s.Counters()
	if entries != maxEntries || len(s.List()) != maxEntries+4 {
		t.Errorf("%d entries (%d listed), want %d", entries, len(s.List())-4, maxEntries)
	}
	if want := uint64(maxEntries + maxEntries/2 + flood); learned != want {
		t.Errorf("learned %d, want %d", learned, want)
	}
	if want := uint64(maxEntries/2 + flood); ev != want {
		t.Errorf("evicted %d, want %d", ev, want)
	}
	if growth := int64(after.HeapAlloc) - int64(before.HeapAlloc); growth > 4<<20 {
		t.Errorf("heap grew by %d bytes over a flood with a bounded table", growth)
	}
	n := s.compiles - compiles
	t.Logf("flood of %d: %s, %d compiles", flood, elapsed, n)
	// One compile per URL would be 100k; pacing allows one per gap.
	if limit := int(elapsed/minCompileGap) + 2; n > limit {
		t.Errorf("%d compiles in %s, want at most %d", n, elapsed, limit)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	s := newSet(t, testConfig(newClock()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if d := s.sweepEvery(); d != 30*time.Second { // forget_after/10 = 1m, capped
		t.Errorf("sweep every %s, want 30s", d)
	}
}

func TestAutoMapStatus(t *testing.T) {
	s := newSet(t, testConfig(newClock()))
	learn(s, "GET", "/a")
	got := s.AutoMapStatus()
	want := &api.AutoMap{Lane: "slow", From: []string{"default"}, Threshold: "1s", ForgetAfter: "10m0s",
		MaxEntries: 100, Entries: 1, Learned: 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
