package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Helpers for the runtime-control tests (control_*_test.go): the admin
// API's mapping calls, lanectl as a binary, rewriting the config file for
// reloads, and a constant load whose every answer is checked.

// mappingDoc is one entry of GET /api/map, decoded loosely enough to see
// that every field of the contract is there.
type mappingDoc struct {
	Lane    string     `json:"lane"`
	Method  string     `json:"method"`
	Pattern string     `json:"pattern"`
	Dynamic bool       `json:"dynamic"`
	Source  string     `json:"source"`
	Hits    uint64     `json:"hits"`
	Added   time.Time  `json:"added"`
	LastHit *time.Time `json:"last_hit"`
}

// adminCall makes one admin API call; body, when not nil, is sent as is
// (a string) or as JSON (anything else).
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
	return do(l.client, method, "http://"+l.admin+path, b, hdr)
}

// mustAdmin is adminCall failing the test unless the answer is 200.
func (l *lanesd) mustAdmin(t *testing.T, method, path string, body any) result {
	t.Helper()
	r := l.adminCall(method, path, body)
	if r.err != nil || r.status != 200 {
		t.Fatalf("%s %s %v: want 200, got %s", method, path, body, r)
	}
	return r
}

// rawMappings is GET /api/map's body, for checking that a refused call
// changed nothing (hits aside: it is compared without them).
func (l *lanesd) mappings(t *testing.T) []mappingDoc {
	t.Helper()
	r := l.mustAdmin(t, http.MethodGet, "/api/map", nil)
	var ms []mappingDoc
	if err := json.Unmarshal(r.body, &ms); err != nil {
		t.Fatalf("GET /api/map: %v: %s", err, r.body)
	}
	return ms
}

// findMapping returns the mapping of method and pattern, if any.
func findMapping(ms []mappingDoc, method, pattern string) (mappingDoc, bool) {
	for _, m := range ms {
		if m.Method == method && m.Pattern == pattern {
			return m, true
		}
	}
	return mappingDoc{}, false
}

// mappingKeys is ms without their statistics, sorted: what a refused call
// must leave as it was.
func mappingKeys(ms []mappingDoc) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s %s -> %s (%s, dynamic=%v)", m.Method, m.Pattern, m.Lane, m.Source, m.Dynamic))
	}
	sort.Strings(out)
	return out
}

// learned returns the mappings auto_map learned.
func learned(ms []mappingDoc) []mappingDoc {
	var out []mappingDoc
	for _, m := range ms {
		if m.Source == "auto_map" {
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
	var e struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == nil || *e.Error == "" {
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
	cmd := exec.CommandContext(ctx, lanectlBin, append([]string{"-admin", "http://" + l.admin}, args...)...)
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
	if err := os.WriteFile(filepath.Join(l.dir, "lanes.hcl"), []byte(fullConfig(hcl)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// logCount counts occurrences of s in l's log so far.
func (l *lanesd) logCount(s string) int { return strings.Count(l.log.String(), s) }

// waitLog waits until l's log holds every one of subs.
func (l *lanesd) waitLog(t *testing.T, timeout time.Duration, subs ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the log to show %q", subs), timeout, func() bool {
		s := l.log.String()
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
				r := do(c, http.MethodGet, l.url(path), nil, nil)
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

// laneDoc is the part of a lane's status the control tests read beyond
// laneStatus.
type laneDoc struct {
	Name           string         `json:"name"`
	State          string         `json:"state"`
	Concurrency    int            `json:"concurrency"`
	Draining       bool           `json:"draining"`
	Drains         uint64         `json:"drains"`
	WorkersByState map[string]int `json:"workers_by_state"`
}

type autoMapDoc struct {
	Entries   int    `json:"entries"`
	Learned   uint64 `json:"learned"`
	Forgotten uint64 `json:"forgotten"`
	Evicted   uint64 `json:"evicted"`
}

// extStatus is /api/status with the fields statusDoc does not decode.
type extStatus struct {
	Lanes   []laneDoc   `json:"lanes"`
	AutoMap *autoMapDoc `json:"auto_map"`
}

func (l *lanesd) extStatus(t *testing.T) extStatus {
	t.Helper()
	r := l.mustAdmin(t, http.MethodGet, "/api/status", nil)
	var st extStatus
	if err := json.Unmarshal(r.body, &st); err != nil {
		t.Fatalf("GET /api/status: %v", err)
	}
	return st
}

func (l *lanesd) laneDoc(t *testing.T, name string) laneDoc {
	t.Helper()
	for _, ld := range l.extStatus(t).Lanes {
		if ld.Name == name {
			return ld
		}
	}
	t.Fatalf("no lane %q in status", name)
	return laneDoc{}
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
