package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// Helpers for the runtime-control tests (control_*_test.go): the admin
// API's mapping calls, lanectl as a binary, rewriting the config file for
// reloads, and a constant load whose every answer is checked.

// adminCall makes one admin API call as raw HTTP, for the tests of how
// the API answers what api.Client never sends (bodies that are not JSON,
// wrong methods) and of its error answers' form; body, when not nil, is
// sent as is (a string) or as JSON (anything else).
func (l *lanesd) adminCall(method, path string, body any) result {
	var b []byte
	switch v := body.(type) {
	case nil:
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return result{err: err}
		}
	}
	hdr := http.Header{}
	if b != nil {
		hdr.Set("Content-Type", "application/json")
	}
	return do(l.client, method, "http://"+l.Admin+path, b, hdr)
}

// mappings is GET /api/map.
func (l *lanesd) mappings(t *testing.T) []api.Mapping {
	t.Helper()
	ms, err := l.API.Mappings(context.Background())
	if err != nil {
		t.Fatalf("GET /api/map: %v", err)
	}
	return ms
}

// mapTo is POST /api/map, failing the test unless it is accepted.
func (l *lanesd) mapTo(t *testing.T, lane, method, pattern string) {
	t.Helper()
	if _, err := l.API.Map(context.Background(), api.MapRequest{Lane: lane, Method: method, Pattern: pattern}); err != nil {
		t.Fatalf("POST /api/map %s %s %s: %v", lane, method, pattern, err)
	}
}

// unmap is DELETE /api/map, failing the test unless it is accepted.
func (l *lanesd) unmap(t *testing.T, method, pattern string) {
	t.Helper()
	if _, err := l.API.Unmap(context.Background(), api.UnmapRequest{Method: method, Pattern: pattern}); err != nil {
		t.Fatalf("DELETE /api/map %s %s: %v", method, pattern, err)
	}
}

// reload is POST /api/reload, failing the test unless it is accepted.
func (l *lanesd) reload(t *testing.T) api.ReloadResult {
	t.Helper()
	res, err := l.API.Reload(context.Background())
	if err != nil {
		t.Fatalf("POST /api/reload: %v", err)
	}
	return res
}

// drain is POST /api/lanes/NAME/drain, failing the test unless it is
// accepted.
func (l *lanesd) drain(t *testing.T, lane string) api.DrainResult {
	t.Helper()
	res, err := l.API.Drain(context.Background(), lane)
	if err != nil {
		t.Fatalf("POST /api/lanes/%s/drain: %v", lane, err)
	}
	return res
}

// resize is POST /api/lanes/NAME/resize, failing the test unless it is
// accepted.
func (l *lanesd) resize(t *testing.T, lane string, r api.ResizeRequest) api.ResizeResult {
	t.Helper()
	res, err := l.API.Resize(context.Background(), lane, r)
	if err != nil {
		t.Fatalf("POST /api/lanes/%s/resize: %v", lane, err)
	}
	return res
}

// events is GET /api/events?since=ID.
func (l *lanesd) events(t *testing.T, since uint64) []api.Event {
	t.Helper()
	es, err := l.API.Events(context.Background(), since)
	if err != nil {
		t.Fatalf("GET /api/events: %v", err)
	}
	return es
}

// metricsText is GET /metrics.
func (l *lanesd) metricsText(t *testing.T) string {
	t.Helper()
	m, err := l.API.Metrics(context.Background())
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	return m
}

// refusal returns the admin API's refusal in err, failing the test if err
// is not one.
func refusal(t *testing.T, what string, err error) *api.ServerError {
	t.Helper()
	var se *api.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("%s: want a refusal, got %v", what, err)
	}
	return se
}

// findMapping returns the mapping of method and pattern, if any.
func findMapping(ms []api.Mapping, method, pattern string) (api.Mapping, bool) {
	for _, m := range ms {
		if m.Method == method && m.Pattern == pattern {
			return m, true
		}
	}
	return api.Mapping{}, false
}

// mappingKeys is ms without their statistics, sorted: what a refused call
// must leave as it was.
func mappingKeys(ms []api.Mapping) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s %s -> %s (%s, dynamic=%v)", m.Method, m.Pattern, m.Lane, m.Source, m.Dynamic))
	}
	sort.Strings(out)
	return out
}

// learned returns the mappings auto_map learned.
func learned(ms []api.Mapping) []api.Mapping {
	var out []api.Mapping
	for _, m := range ms {
		if m.Source == api.SourceAutoMap {
			out = append(out, m)
		}
	}
	return out
}

// checkErrorBody checks that r is a 4xx with a JSON {"error": "..."} body.
func checkErrorBody(t *testing.T, what string, r result) {
	t.Helper()
	if r.err != nil || r.status < 400 || r.status > 499 {
		t.Errorf("%s: want a 4xx, got %s", what, r)
		return
	}
	var e api.ErrorBody
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Errorf("%s: %d body %q is not {\"error\": \"...\"}", what, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
}

// lanectl runs the lanectl binary against l's admin listener and returns
// its exit status and everything it printed.
func (l *lanesd) lanectl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, lanectlBin, append([]string{"-admin", "http://" + l.Admin}, args...)...)
	cmd.Env = append(os.Environ(), "LANES_ADMIN=", "LANES_TOKEN=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run()
	if cmd.ProcessState == nil {
		t.Fatalf("lanectl %v did not run: %s", args, out.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// writeConfig replaces l's config file with hcl (completed as startLanesd
// does), for a reload.
func (l *lanesd) writeConfig(t *testing.T, hcl string) {
	t.Helper()
	if err := l.WriteConfig(fullConfig(hcl)); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until l's log holds every one of subs.
func (l *lanesd) waitLog(t *testing.T, timeout time.Duration, subs ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the log to show %q", subs), timeout, func() bool {
		s := l.Log.String()
		for _, sub := range subs {
			if !strings.Contains(s, sub) {
				return false
			}
		}
		return true
	})
}

// load is constant traffic on the front: n goroutines, each GETting its
// path in a loop. Every answer that is not a 2xx, and every transport
// error, is kept for the report.
type load struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	sent   atomic.Int64
	mu     sync.Mutex
	failed []string
	lanes  map[string]int // X-Lane of the answers (with debug_headers)
	// check, if set, judges each 2xx answer: "" if right, else why not.
	check func(path string, r result) string
}

// startLoad starts n goroutines GETting paths[i%len(paths)] from l.
func (l *lanesd) startLoad(n int, paths ...string) *load {
	return l.startCheckedLoad(n, nil, paths...)
}

// startCheckedLoad is startLoad that also fails every answer check finds
// wrong.
func (l *lanesd) startCheckedLoad(n int, check func(path string, r result) string, paths ...string) *load {
	ld := &load{stop: make(chan struct{}), lanes: map[string]int{}, check: check}
	c := newClient(30 * time.Second)
	for i := range n {
		path := paths[i%len(paths)]
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			for {
				select {
				case <-ld.stop:
					return
				default:
				}
				r := do(c, http.MethodGet, l.URL(path), nil, nil)
				ld.sent.Add(1)
				ld.mu.Lock()
				if r.err != nil || r.status < 200 || r.status > 299 {
					ld.failed = append(ld.failed, "GET "+path+": "+r.String())
				} else if why := ld.checkAnswer(path, r); why != "" {
					ld.failed = append(ld.failed, "GET "+path+": "+why)
				} else if lane := r.header.Get("X-Lane"); lane != "" {
					ld.lanes[lane]++
				}
				ld.mu.Unlock()
			}
		}()
	}
	return ld
}

func (ld *load) checkAnswer(path string, r result) string {
	if ld.check == nil {
		return ""
	}
	return ld.check(path, r)
}

// sentSoFar is how many requests have been answered so far.
func (ld *load) sentSoFar() int64 { return ld.sent.Load() }

// finish stops the load, waits for the requests in flight, and fails the
// test if any request failed or fewer than min were sent.
func (ld *load) finish(t *testing.T, min int64) {
	t.Helper()
	// On a loaded machine the change under test may be over before the
	// load has sent much: let it send its minimum first.
	for deadline := time.Now().Add(10 * time.Second); ld.sent.Load() < min && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	close(ld.stop)
	ld.wg.Wait()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	n := ld.sent.Load()
	t.Logf("load: %d requests, %d failed, lanes %v", n, len(ld.failed), ld.lanes)
	for i, f := range ld.failed {
		if i == 10 {
			t.Errorf("... and %d more failures", len(ld.failed)-10)
			break
		}
		t.Errorf("request under load failed: %s", f)
	}
	if n < min {
		t.Errorf("load sent only %d requests, want ≥ %d", n, min)
	}
}

// disjoint reports whether a and b share no element.
func disjoint(a, b []int) bool {
	for _, x := range a {
		if contains(b, x) {
			return false
		}
	}
	return true
}
