package supervisor

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/supervisor/lane"
)

// fakeLoad is a lane as the sampler sees it.
type fakeLoad struct {
	name string
	ld   lane.Load
}

func (f *fakeLoad) Name() string    { return f.name }
func (f *fakeLoad) Load() lane.Load { return f.ld }

// countsOf hands out one laneCounts per name, as metrics.counts does.
type countsOf map[string]*laneCounts

func (c countsOf) get(name string) *laneCounts {
	if c[name] == nil {
		c[name] = &laneCounts{}
	}
	return c[name]
}

func lanesSamples(t *testing.T, sm *sampler, name string, since uint64) []api.LaneSamples {
	t.Helper()
	s, ok := sm.samples(name, since)
	if !ok {
		t.Fatalf("samples(%q): no such lane", name)
	}
	return s.Lanes
}

func TestHistBuckets(t *testing.T) {
	prev := -1
	for us := int64(0); us < 1<<22; us += 1 + us/64 {
		d := time.Duration(us) * time.Microsecond
		i := histIndex(d)
		lo, hi := histBounds(i)
		if float64(us) < lo || float64(us) >= hi {
			t.Fatalf("%v in bucket %d [%v, %v) µs", d, i, lo, hi)
		}
		if i < prev {
			t.Fatalf("%v in bucket %d, below the previous value's %d", d, i, prev)
		}
		prev = i
	}
	if got := histIndex(-time.Second); got != 0 {
		t.Errorf("a negative duration is in bucket %d, want 0", got)
	}
	if got := histIndex(1000 * time.Hour); got != histBuckets-1 {
		t.Errorf("1000 h is in bucket %d, want the last, %d", got, histBuckets-1)
	}
}

// Percentiles read from the buckets are within a bucket's width of the
// exact ones.
func TestQuantile(t *testing.T) {
	var h durHist
	for ms := 1; ms <= 1000; ms++ {
		h.add(time.Duration(ms) * time.Millisecond)
	}
	var d, prev [histBuckets]uint64
	n := delta(&d, &h, &prev)
	if n != 1000 {
		t.Fatalf("delta counted %d values, want 1000", n)
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 500}, {0.9, 900}, {0.99, 990}, {0.001, 1}} {
		if got := quantile(&d, n, c.q); math.Abs(got-c.want)/c.want > 0.125 {
			t.Errorf("q%v = %.2f ms, want %v ± 12.5%%", c.q, got, c.want)
		}
	}
	if got := quantile(&d, 0, 0.5); !math.IsNaN(got) {
		t.Errorf("quantile of nothing = %v, want NaN", got)
	}
	// A second delta with nothing new is empty.
	if n := delta(&d, &h, &prev); n != 0 {
		t.Errorf("second delta counted %d values, want 0", n)
	}
}

// Rates come from the deltas of the counters over the time between two
// samples; percentiles from the requests that ended in between; a lane's
// first sample has neither.
func TestSampleRates(t *testing.T) {
	var sm sampler
	counts := countsOf{}
	l := &fakeLoad{name: "default", ld: lane.Load{Queued: 3, Inflight: 4, Ready: 4, Busy: 4}}
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	c := counts.get("default")
	c.observe(&lane.Outcome{Status: 200, Total: time.Second}) // before the first sample: not in any rate
	takeSample(&sm, t0, []*fakeLoad{l}, counts.get)

	for range 50 {
		c.observe(&lane.Outcome{Status: 200, Queue: 10 * time.Millisecond, Total: 20 * time.Millisecond})
	}
	for range 5 {
		c.observe(&lane.Outcome{Status: 302, Total: 20 * time.Millisecond})
	}
	for range 10 {
		c.observe(&lane.Outcome{Status: 404, Total: 20 * time.Millisecond})
	}
	for range 5 { // refused after waiting out queue_timeout: 5xx, a queue wait, no latency
		c.observe(&lane.Outcome{Status: 503, Result: lane.Refused, Queue: 2 * time.Second})
	}
	c.observe(&lane.Outcome{Status: 0, Total: 20 * time.Millisecond}) // no status class: in no rate
	l.ld = lane.Load{Queued: 1, Inflight: 2, Ready: 3, Busy: 2}
	takeSample(&sm, t0.Add(5*time.Second), []*fakeLoad{l}, counts.get)
	l.ld = lane.Load{}
	takeSample(&sm, t0.Add(15*time.Second), []*fakeLoad{l}, counts.get)

	ls := lanesSamples(t, &sm, "", 0)
	if len(ls) != 1 || ls[0].Lane != "default" || len(ls[0].Samples) != 3 {
		t.Fatalf("samples = %+v, want lane default with 3", ls)
	}
	first, s, idle := ls[0].Samples[0], ls[0].Samples[1], ls[0].Samples[2]
	if first.RPS != nil || first.LatencyP50 != nil || first.QueueWaitP99 != nil {
		t.Errorf("first sample has rates or percentiles: %+v", first)
	}
	if first.Queued != 3 || first.Inflight != 4 || first.Ready != 4 || first.Busy != 4 || !first.Time.Equal(t0) || first.Seq != 1 {
		t.Errorf("first sample = %+v", first)
	}
	if want := (api.StatusRates{S2xx: 10, S3xx: 1, S4xx: 2, S5xx: 1}); s.RPS == nil || *s.RPS != want {
		t.Errorf("rates = %+v, want %+v", s.RPS, want)
	}
	if s.Queued != 1 || s.Inflight != 2 || s.Ready != 3 || s.Busy != 2 || s.Seq != 2 {
		t.Errorf("gauges of the second sample = %+v", s)
	}
	// 5 of the 55 queue waits are 2 s: the p99 is among them. Latency:
	// every answered request took 20 ms; the refused ones are not in it.
	near := func(what string, got *float64, want float64) {
		t.Helper()
		if got == nil || math.Abs(*got-want)/want > 0.125 {
			t.Errorf("%s = %v, want %v ± 12.5%%", what, got, want)
		}
	}
	near("queue wait p99", s.QueueWaitP99, 2000)
	near("latency p50", s.LatencyP50, 20)
	near("latency p99", s.LatencyP99, 20)
	// Ten seconds with nothing: rates 0, no percentiles.
	if idle.RPS == nil || *idle.RPS != (api.StatusRates{}) || idle.LatencyP99 != nil || idle.QueueWaitP99 != nil {
		t.Errorf("idle sample = %+v, rates %+v", idle, idle.RPS)
	}
	// since: only what is newer.
	if got := lanesSamples(t, &sm, "default", 2); len(got[0].Samples) != 1 || got[0].Samples[0].Seq != 3 {
		t.Errorf("since 2: %+v", got)
	}
}

// The ring keeps the last ringSize samples, oldest first, whatever number
// were taken.
func TestSampleRingWraps(t *testing.T) {
	var sm sampler
	counts := countsOf{}
	l := &fakeLoad{name: "a"}
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	const taken = ringSize*2 + 7
	for i := range taken {
		l.ld.Queued = i
		takeSample(&sm, t0.Add(time.Duration(i)*sampleEvery), []*fakeLoad{l}, counts.get)
	}
	ss := lanesSamples(t, &sm, "a", 0)[0].Samples
	if len(ss) != ringSize {
		t.Fatalf("%d samples kept, want %d", len(ss), ringSize)
	}
	for i, s := range ss {
		want := taken - ringSize + i
		if s.Queued != want || s.Seq != uint64(want+1) || !s.Time.Equal(t0.Add(time.Duration(want)*sampleEvery)) {
			t.Fatalf("sample %d: queued %d seq %d at %v; want %d, %d", i, s.Queued, s.Seq, s.Time, want, want+1)
		}
	}
	if got := lanesSamples(t, &sm, "a", uint64(taken-2))[0].Samples; len(got) != 2 || got[1].Seq != uint64(taken) {
		t.Errorf("since %d: %d samples", taken-2, len(got))
	}
	if got := lanesSamples(t, &sm, "a", uint64(taken))[0].Samples; len(got) != 0 {
		t.Errorf("since the last: %d samples, want none", len(got))
	}
}

// A lane that a reload removed leaves the samples at the next sample; one
// added again later starts afresh, and the order follows the lanes.
func TestSampleLaneRemoved(t *testing.T) {
	var sm sampler
	counts := countsOf{}
	a, b, c := &fakeLoad{name: "a"}, &fakeLoad{name: "b"}, &fakeLoad{name: "c"}
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * sampleEvery) }
	takeSample(&sm, at(0), []*fakeLoad{a, b, c}, counts.get)
	takeSample(&sm, at(1), []*fakeLoad{a, b, c}, counts.get)
	takeSample(&sm, at(2), []*fakeLoad{c, b}, counts.get) // a removed, the order changed

	names := func() (out []string) {
		for _, ls := range lanesSamples(t, &sm, "", 0) {
			out = append(out, ls.Lane)
		}
		return out
	}
	if got := names(); len(got) != 2 || got[0] != "c" || got[1] != "b" {
		t.Fatalf("lanes after a was removed: %q, want [c b]", got)
	}
	if _, ok := sm.samples("a", 0); ok {
		t.Error("samples of the removed lane a are still served")
	}
	if got := lanesSamples(t, &sm, "b", 0)[0].Samples; len(got) != 3 {
		t.Errorf("lane b kept %d samples, want 3", len(got))
	}

	counts.get("a").observe(&lane.Outcome{Status: 200})
	takeSample(&sm, at(3), []*fakeLoad{a, b, c}, counts.get)
	got := lanesSamples(t, &sm, "a", 0)[0].Samples
	if len(got) != 1 || got[0].RPS != nil || got[0].Seq != 4 {
		t.Errorf("lane a added again: %+v; want one sample with no rates yet", got)
	}
	if got := names(); len(got) != 3 || got[0] != "a" || got[2] != "c" {
		t.Errorf("lanes = %q, want [a b c]", got)
	}
}

// Once every lane has its ring a sample allocates nothing.
func TestSampleAllocs(t *testing.T) {
	var sm sampler
	counts := countsOf{}
	lanes := []*fakeLoad{{name: "a"}, {name: "b"}, {name: "c"}}
	now := time.Now()
	takeSample(&sm, now, lanes, counts.get)
	allocs := testing.AllocsPerRun(100, func() {
		now = now.Add(sampleEvery)
		counts.get("b").observe(&lane.Outcome{Status: 200, Total: time.Millisecond})
		takeSample(&sm, now, lanes, counts.get)
	})
	if allocs != 0 {
		t.Errorf("a sample allocates %v times, want 0", allocs)
	}
}

// The supervisor samples its lanes from the start: GET /api/samples has
// every lane, and the figures of requests served through the front.
func TestSupervisorSamples(t *testing.T) {
	s := start(t, `
lane "default" {
  min_workers = 1
  command = [CMD]
}
lane "other" {
  min_workers = 1
  map = ["GET /other/*"]
  command = [CMD]
}`)
	var got api.Samples
	waitFor(t, "a first sample of both lanes", 10*time.Second, func() bool {
		var err error
		got, err = s.Samples("", 0)
		return err == nil && len(got.Lanes) == 2 && len(got.Lanes[1].Samples) > 0
	})
	if got.Lanes[0].Lane != "default" || got.Lanes[1].Lane != "other" || got.IntervalS != 5 || got.WindowS != 900 {
		t.Errorf("samples = %+v", got)
	}
	if _, err := s.Samples("nope", 0); api.Code(err) != 404 {
		t.Errorf("samples of an unknown lane: %v, want a 404", err)
	}
	for range 3 {
		if code, _, _ := get(t, s, "/other/x"); code != 200 {
			t.Fatalf("GET /other/x: %d", code)
		}
	}
	// The next sample counts them (within sampleEvery).
	seq := got.Seq
	waitFor(t, "a sample counting the requests", 3*sampleEvery, func() bool {
		got, _ = s.Samples("other", seq)
		return len(got.Lanes) == 1 && len(got.Lanes[0].Samples) > 0
	})
	smp := got.Lanes[0].Samples[0]
	if smp.RPS == nil || smp.RPS.S2xx <= 0 || smp.LatencyP50 == nil || smp.Ready != 1 {
		t.Errorf("sample after 3 requests: %+v, rates %+v", smp, smp.RPS)
	}

	// A reload removes lane other: its samples go with the next sample
	// (taken here rather than waited for).
	file := s.state.Load().cfg.File
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, src[:strings.Index(string(src), `lane "other"`)], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	takeSample(&s.samples, time.Now(), s.state.Load().lanes, s.metrics.counts)
	if _, err := s.Samples("other", 0); api.Code(err) != 404 {
		t.Errorf("samples of the removed lane: %v, want a 404", err)
	}
	if got, _ := s.Samples("", 0); len(got.Lanes) != 1 || got.Lanes[0].Lane != "default" {
		t.Errorf("samples after the reload: lanes %+v, want default alone", got.Lanes)
	}
}

// BenchmarkSampleCounts is what the samples add to every request's
// accounting (metrics.observe): three atomic adds, from every core at once.
func BenchmarkSampleCounts(b *testing.B) {
	var c laneCounts
	o := &lane.Outcome{Status: 200, Queue: 30 * time.Microsecond, Total: 2 * time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.observe(o)
		}
	})
}

// BenchmarkTakeSample is one sample of four lanes (every 5 s).
func BenchmarkTakeSample(b *testing.B) {
	var sm sampler
	counts := countsOf{}
	lanes := []*fakeLoad{{name: "a"}, {name: "b"}, {name: "c"}, {name: "d"}}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(sampleEvery)
		takeSample(&sm, now, lanes, counts.get)
	}
}
