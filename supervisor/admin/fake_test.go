package admin

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// fakeBackend is a Backend with two lanes ("default", "slow") that records
// every call it gets.
type fakeBackend struct {
	mu    sync.Mutex
	calls []string
	maps  []api.Mapping
	// reloadErr, when set, is what Reload answers.
	reloadErr error
	// fetchdOff makes Status report fetchd disabled (no theme configured).
	fetchdOff bool
}

func (f *fakeBackend) setFetchdOff(off bool) {
	f.mu.Lock()
	f.fetchdOff = off
	f.mu.Unlock()
}

func newFake() *fakeBackend {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &fakeBackend{maps: []api.Mapping{
		{Lane: "fast", Method: "GET", Pattern: "/static/*", Source: api.SourceConfig, Hits: 12, Added: t0, LastHit: &t0},
		{Lane: "slow", Method: "POST", Pattern: "/report/<b>x</b>", Dynamic: true, Source: api.SourceAutoMap, Hits: 3, Added: t0},
	}}
}

func (f *fakeBackend) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeBackend) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func known(lane string) bool { return lane == "default" || lane == "slow" || lane == "fast" }

func (f *fakeBackend) Status() api.Status {
	f.record("status")
	st := api.Status{
		PID: 4242, UptimeS: 90, Listen: "127.0.0.1:8080", Config: "configs/example.hcl",
		Lanes: []api.Lane{
			{Name: "default", State: "ok", MinWorkers: 2, MaxWorkers: 8, MaxQueue: 100, QueueTimeout: "5s", RequestTimeout: "30s",
				Served: 1234, Queued: 3, Inflight: 1, LastDrain: "done: 2 replaced", Timeouts: 7,
				Workers: []api.Worker{{PID: 101, State: "ready", Served: 600}, {PID: 102, State: "ready", Inflight: 1, Served: 634}},
				Latency: api.Percentiles{Count: 10, P50: 1.5, P99: 20}},
			{Name: "slowlane", State: "crash_loop", MinWorkers: 1, MaxWorkers: 4, MaxQueue: 50, QueueTimeout: "5s", RequestTimeout: "1m0s",
				CrashLoop: true, Crashes: 5, BackoffMS: 4000, LastExit: "exit status 2",
				Workers: []api.Worker{{PID: 201, State: "starting", Status: "warming <i>cache</i>"}}},
		},
		AutoMap: &api.AutoMap{Lane: "slow", From: []string{"default"}, Threshold: "3s", Entries: 1, Learned: 5},
		Fetchd:  api.Fetchd{Enabled: true, PID: 300, State: "ready", CacheEntries: 2},
		Themes: []api.Theme{
			{Name: "main", URL: "http://127.0.0.1:9001/theme.html", State: "fresh", Version: "v1"},
			{Name: "resting", URL: "http://127.0.0.1:9001/other.html", State: "stale", AgeS: 9, MaxStaleS: 3600, Version: "v2"},
			{Name: "failing", URL: "http://127.0.0.1:9002/down.html", State: "stale", AgeS: 60, MaxStaleS: 3600, LastError: "connection refused"},
		},
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fetchdOff {
		st.Fetchd, st.Themes = api.Fetchd{Enabled: false, State: "off"}, []api.Theme{}
	}
	return st
}

func (f *fakeBackend) Mappings() []api.Mapping {
	f.record("mappings")
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Mapping(nil), f.maps...)
}

func (f *fakeBackend) Map(r api.MapRequest) (api.Mapping, error) {
	f.record("map %s %s %s", r.Lane, r.Method, r.Pattern)
	if !known(r.Lane) {
		return api.Mapping{}, api.NotFound("no lane %q", r.Lane)
	}
	if r.Pattern == "/boom" {
		return api.Mapping{}, errors.New("router exploded")
	}
	if r.Pattern == "/panic" {
		panic("backend panic")
	}
	m := api.Mapping{Lane: r.Lane, Method: r.Method, Pattern: r.Pattern, Dynamic: true, Source: api.SourceAPI, Added: time.Now()}
	f.mu.Lock()
	f.maps = append(f.maps, m)
	f.mu.Unlock()
	return m, nil
}

func (f *fakeBackend) Unmap(r api.UnmapRequest) error {
	f.record("unmap %s %s", r.Method, r.Pattern)
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, m := range f.maps {
		if m.Method == r.Method && m.Pattern == r.Pattern {
			f.maps = append(f.maps[:i], f.maps[i+1:]...)
			return nil
		}
	}
	return api.NotFound("no mapping %s %s", r.Method, r.Pattern)
}

func (f *fakeBackend) Resize(lane string, r api.ResizeRequest) (api.ResizeResult, error) {
	res := api.ResizeResult{Lane: lane, MinWorkers: 2, MaxWorkers: 8}
	if r.MinWorkers != nil {
		res.MinWorkers = *r.MinWorkers
	}
	if r.MaxWorkers != nil {
		res.MaxWorkers = *r.MaxWorkers
	}
	f.record("resize %s %d %d", lane, res.MinWorkers, res.MaxWorkers)
	if !known(lane) {
		return api.ResizeResult{}, api.NotFound("no lane %q", lane)
	}
	if res.MinWorkers > res.MaxWorkers {
		return api.ResizeResult{}, api.BadRequest("lane %s: min_workers %d > max_workers %d", lane, res.MinWorkers, res.MaxWorkers)
	}
	return res, nil
}

func (f *fakeBackend) Drain(lane string) (api.DrainResult, error) {
	f.record("drain %s", lane)
	if !known(lane) {
		return api.DrainResult{}, api.NotFound("no lane %q", lane)
	}
	return api.DrainResult{Lane: lane, Workers: 2, Started: true}, nil
}

func (f *fakeBackend) Reload() (api.ReloadResult, error) {
	f.record("reload")
	if f.reloadErr != nil {
		return api.ReloadResult{}, f.reloadErr
	}
	return api.ReloadResult{Config: "configs/example.hcl", Changed: []string{"lane slow: resized 2..4 -> 3..6"}}, nil
}

// refusedReload is a reload refused with diagnostics.
var refusedReload = &api.Error{Code: http.StatusUnprocessableEntity, Msg: "config has errors; the running one stays",
	Diagnostics: []string{"configs/example.hcl:3,1: Unsupported argument; An argument named \"bogus\" is not expected here."}}

func (f *fakeBackend) Requests() []api.InflightRequest {
	f.record("requests")
	return []api.InflightRequest{
		{Lane: "default", Worker: 102, Method: "GET", Path: "/demo/hang", Client: "127.0.0.1", Elapsed: 28.2, TimeoutIn: 1.8, Queued: 0.4},
		{Lane: "slow", Worker: 42, Method: "GET", Path: "/demo/sleep", Client: "127.0.0.1", Elapsed: 1.5, TimeoutIn: 28.5},
	}
}

func (f *fakeBackend) Events(since uint64) []api.Event {
	f.record("events %d", since)
	t0 := time.Now().Add(-time.Minute)
	all := []api.Event{
		{ID: 1, Time: t0, Kind: api.EventKill, Lane: "slow", PID: 42, Method: "GET", Path: "/demo/hang", Detail: "request_timeout 30s passed"},
		{ID: 2, Time: t0, Kind: api.EventLearned, Lane: "slow", Method: "GET", Path: "/r"},
	}
	var out []api.Event
	for _, e := range all {
		if e.ID > since {
			out = append(out, e)
		}
	}
	return out
}

// Samples serves 15 minutes of samples, one every 5 s up to now, for the
// lanes "default" and "slowlane": a sample's seq is its time in 5 s steps,
// so new ones appear as time passes. Lane default answers 2xx at 10/s and
// 5xx at 1/s, with 2 requests queued; its latencies are known.
func (f *fakeBackend) Samples(lane string, since uint64) (api.Samples, error) {
	f.record("samples %s %d", lane, since)
	now := uint64(time.Now().Unix() / 5)
	out := api.Samples{IntervalS: 5, WindowS: 900, Seq: now, Lanes: []api.LaneSamples{}}
	for _, name := range []string{"default", "slowlane"} {
		if lane != "" && lane != name {
			continue
		}
		ls := api.LaneSamples{Lane: name, Samples: []api.Sample{}}
		for seq := max(now-179, since+1); seq <= now; seq++ {
			s := api.Sample{Seq: seq, Time: time.Unix(int64(seq)*5, 0), Ready: 1}
			if name == "default" {
				p50, p99, wait := 1.5, 20.0, 3.0
				s.RPS = &api.StatusRates{S2xx: 10, S5xx: 1}
				s.Queued, s.Inflight, s.Ready, s.Busy = 2, 1, 2, 1
				s.LatencyP50, s.LatencyP99, s.QueueWaitP99 = &p50, &p99, &wait
			}
			ls.Samples = append(ls.Samples, s)
		}
		out.Lanes = append(out.Lanes, ls)
	}
	if lane != "" && len(out.Lanes) == 0 {
		return api.Samples{}, api.NotFound("no lane %q", lane)
	}
	return out, nil
}
