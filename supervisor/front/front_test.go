package front

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/supervisor/lane"
	"github.com/lanes-dev/lanes/supervisor/mapping"
)

// The front's unit tests run a real Front server on an in-memory listener
// in front of fake lanes, whose slots send requests to an in-memory
// "worker" (a fasthttp server) or fail the way a worker's data plane
// fails. Tests through a real lanesd and its worker processes are in
// package supervisor and in integration.

// fakeLane is a lane whose Acquire hands out the slots of next in turn
// (or fails with err).
type fakeLane struct {
	name string
	err  error
	mu   sync.Mutex
	next []*fakeSlot
}

func (l *fakeLane) Name() string                  { return l.name }
func (l *fakeLane) Direct() bool                  { return false }
func (l *fakeLane) RequestTimeout() time.Duration { return 5 * time.Second }
func (l *fakeLane) RetryAfter() int               { return 7 }

func (l *fakeLane) Acquire() (Slot, error) {
	if l.err != nil {
		return nil, l.err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.next[0]
	if len(l.next) > 1 {
		l.next = l.next[1:]
	}
	return s, nil
}

// fakeSlot sends requests to a worker client, or fails with err (and
// reports x), or panics; it records what it was given back.
type fakeSlot struct {
	hc    *fasthttp.HostClient
	err   error
	x     lane.Exchange
	panic bool

	mu       sync.Mutex
	begun    int
	released []lane.Outcome
}

func (s *fakeSlot) Do(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
	if s.panic {
		panic("slot exploded")
	}
	if s.err != nil {
		return s.err
	}
	resp.Header.SetNoDefaultContentType(true)
	return s.hc.DoDeadline(req, resp, deadline)
}
func (s *fakeSlot) Exchange(*fasthttp.Response) lane.Exchange { return s.x }
func (s *fakeSlot) Exec() bool                                { return false }
func (s *fakeSlot) PID() int                                  { return 42 }
func (s *fakeSlot) Begin(*lane.Outcome)                       { s.mu.Lock(); s.begun++; s.mu.Unlock() }
func (s *fakeSlot) Handoff(o, to *lane.Outcome)               {}
func (s *fakeSlot) Release(o *lane.Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o.PID = 42
	s.released = append(s.released, *o)
}

func (s *fakeSlot) releases() []lane.Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]lane.Outcome(nil), s.released...)
}

// worker is an in-memory HTTP server standing for a worker process:
// /small answers a few bytes, /large more than smallBody (spooled).
func worker(t testing.TB) *fasthttp.HostClient {
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/large":
			ctx.SetBody(bytes.Repeat([]byte("x"), 3*smallBody))
		default:
			ctx.WriteString("hello")
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	return &fasthttp.HostClient{Addr: "worker", Dial: func(string) (net.Conn, error) { return ln.Dial() }, StreamResponseBody: true}
}

// harness is a Front serving on an in-memory listener with one lane,
// counting what finish reports.
type harness struct {
	f         *Front
	client    *fasthttp.HostClient
	set       *mapping.Set
	access    syncBuffer
	accessLog *AccessLog
	snap      *Snapshot

	mu       sync.Mutex
	observed []lane.Outcome
	ended    int
}

func newHarness(t testing.TB, l Lane) *harness {
	h := &harness{}
	set, err := mapping.New(mapping.Config{
		Lanes:   []string{config.DefaultLaneName, "slow"},
		Static:  map[string][]config.Pattern{},
		AutoMap: &config.AutoMap{Threshold: time.Hour, Lane: "slow", From: []string{config.DefaultLaneName}, ForgetAfter: time.Hour, MaxEntries: 10},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.set = set
	cfg := &config.Config{Log: config.Log{AccessLog: true}}
	access := NewAccessLog("lanesd.access", false, &h.access)
	snap := &Snapshot{Config: cfg, Lanes: []Lane{l, &fakeLane{name: "slow"}}, Table: set.Table(), Access: access}
	h.snap = snap
	h.f = New(Options{
		Config:   config.Front{MaxHeaderSize: 8 << 10, MaxBodySize: 1 << 20, ClientBodyBuffer: 16 << 10, ResponseBuffer: 16 << 10, MaxTempFile: 1 << 20},
		Log:      hclog.NewNullLogger(),
		RunDir:   t.TempDir(),
		Snapshot: func() *Snapshot { return snap },
		Observe: func(name string, o *lane.Outcome) {
			h.mu.Lock()
			h.observed = append(h.observed, *o)
			h.mu.Unlock()
		},
		Ended: func(Lane) { h.mu.Lock(); h.ended++; h.mu.Unlock() },
	})
	ln := fasthttputil.NewInmemoryListener()
	srv := h.f.Server()
	go srv.Serve(ln)
	t.Cleanup(func() { _ = srv.Shutdown() })
	h.client = &fasthttp.HostClient{Addr: "front", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	h.accessLog = access
	return h
}

func (h *harness) get(t *testing.T, path string, header ...string) (int, string, *fasthttp.ResponseHeader) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://front" + path)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if err := h.client.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	rh := new(fasthttp.ResponseHeader)
	resp.Header.CopyTo(rh)
	return resp.StatusCode(), string(resp.Body()), rh
}

// lines returns the access log's lines so far.
func (h *harness) lines() []string {
	h.accessLog.Flush()
	s := strings.TrimSpace(h.access.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Every way a request that reached a lane can end goes through finish
// once: every slot it acquired is released once (a retried attempt as a
// retry), and it gets one metrics observation and one access log line,
// with the status the client got; the lane hears of every attempt.
func TestFinishOncePerExit(t *testing.T) {
	hc := worker(t)
	dialErr := &net.OpError{Op: "dial", Net: "unix", Err: errors.New("connection refused")}
	for _, tc := range []struct {
		name   string
		lane   func() *fakeLane
		path   string
		status int
		result lane.Result
		// releases per slot, in the order they were acquired; the last
		// release of the request is not a retry.
		releases []int
	}{
		{"small", func() *fakeLane { return &fakeLane{next: []*fakeSlot{{hc: hc}}} }, "/small", 200, lane.Answered, []int{1}},
		{"spooled", func() *fakeLane { return &fakeLane{next: []*fakeSlot{{hc: hc}}} }, "/large", 200, lane.Answered, []int{1}},
		{"queue full", func() *fakeLane { return &fakeLane{err: lane.ErrQueueFull} }, "/small", 503, lane.Refused, nil},
		{"worker failed", func() *fakeLane {
			return &fakeLane{next: []*fakeSlot{{err: io.ErrUnexpectedEOF, x: lane.Exchange{Reached: true, Responded: true}}}}
		}, "/small", 502, lane.Broken, []int{1}},
		{"hard timeout", func() *fakeLane { return &fakeLane{next: []*fakeSlot{{err: fasthttp.ErrTimeout}}} }, "/small", 504, lane.HardTimeout, []int{1}},
		{"retried", func() *fakeLane { return &fakeLane{next: []*fakeSlot{{err: dialErr}, {hc: hc}}} }, "/small", 200, lane.Answered, []int{1, 1}},
		{"panic", func() *fakeLane { return &fakeLane{next: []*fakeSlot{{panic: true}}} }, "/small", 500, lane.Broken, []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.lane()
			l.name = config.DefaultLaneName
			slots := append([]*fakeSlot(nil), l.next...)
			h := newHarness(t, l)
			status, _, hdr := h.get(t, tc.path)
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			if tc.status == 503 && string(hdr.Peek("Retry-After")) != "7" {
				t.Errorf("503 without the lane's Retry-After: %q", hdr.Peek("Retry-After"))
			}
			for i, s := range slots {
				rs := s.releases()
				if len(rs) != tc.releases[i] {
					t.Fatalf("slot %d released %d times, want %d", i, len(rs), tc.releases[i])
				}
				if last := i == len(slots)-1; rs[0].Retry == last {
					t.Errorf("slot %d: Retry = %v", i, rs[0].Retry)
				}
				s.mu.Lock()
				begun := s.begun
				s.mu.Unlock()
				if begun != len(rs) {
					t.Errorf("slot %d: begun %d times, released %d", i, begun, len(rs))
				}
			}
			lines := h.lines()
			h.mu.Lock()
			observed, ended := h.observed, h.ended
			h.mu.Unlock()
			if len(observed) != 1 || len(lines) != 1 {
				t.Fatalf("%d observations and %d access lines, want 1 each: %q", len(observed), len(lines), lines)
			}
			if o := observed[0]; o.Status != tc.status || o.Result != tc.result || o.Total <= 0 && tc.result != lane.Broken {
				t.Errorf("observed status %d result %d total %v, want %d %d", o.Status, o.Result, o.Total, tc.status, tc.result)
			}
			if want := max(len(slots), 1); ended != want {
				t.Errorf("the lane heard of %d exits, want %d", ended, want)
			}
			if !strings.Contains(lines[0], " status="+itoa(tc.status)+" ") || !strings.Contains(lines[0], "lane=default ") {
				t.Errorf("access line %q", lines[0])
			}
			if tc.name == "retried" && h.f.Retries() != 1 {
				t.Errorf("retries %d, want 1", h.f.Retries())
			}
		})
	}
}

// A request refused before it has a lane (prepare) costs no slot and is
// accounted for by its access line only (lane "-"): no lane exit, no
// metrics.
func TestRefusedBeforeLaneNotAccounted(t *testing.T) {
	s := &fakeSlot{hc: worker(t)}
	h := newHarness(t, &fakeLane{name: config.DefaultLaneName, next: []*fakeSlot{s}})
	status, _, _ := h.get(t, "/small", "Upgrade", "websocket", "Connection", "Upgrade")
	if status != fasthttp.StatusNotImplemented {
		t.Fatalf("status %d, want 501", status)
	}
	h.mu.Lock()
	observed, ended := len(h.observed), h.ended
	h.mu.Unlock()
	if n := len(s.releases()); n != 0 || observed != 0 || ended != 0 {
		t.Errorf("refused request accounted for: %d releases, %d observations, %d exits", n, observed, ended)
	}
	lines := h.lines()
	if len(lines) != 1 || !strings.Contains(lines[0], " status=501 ") || !strings.Contains(lines[0], "lane=- ") || !strings.Contains(lines[0], "path=/small") {
		t.Errorf("access lines %q: want one, lane -, status 501, path /small", lines)
	}
}

// finish hands the mapping that classified a request to the auto_map
// trace, typed: a request that hit its hard timeout is learned.
func TestFinishTracesForAutoMap(t *testing.T) {
	h := newHarness(t, &fakeLane{name: config.DefaultLaneName, next: []*fakeSlot{{err: fasthttp.ErrTimeout}}})
	if status, _, _ := h.get(t, "/report"); status != 504 {
		t.Fatalf("status %d, want 504", status)
	}
	for _, m := range h.set.List() {
		if m.Pattern == "/report" && m.Lane == "slow" && m.Method == "GET" {
			return
		}
	}
	t.Errorf("GET /report not learned: %+v", h.set.List())
}

func itoa(n int) string { return string(fasthttp.AppendUint(nil, n)) }

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
