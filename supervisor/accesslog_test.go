package supervisor

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/supervisor/lane"
)

func testOutcome() *lane.Outcome {
	return &lane.Outcome{Method: []byte("GET"), Path: []byte("/a b\x1b[31m"), Status: 200, Bytes: 512, PID: 42,
		Queue: 3 * time.Microsecond, Filter: 0, Run: 1500 * time.Microsecond, Total: 1600 * time.Microsecond}
}

// The access log reads like hclog's own lines: same layout, same quoting.
func TestAccessLogTextMatchesHclog(t *testing.T) {
	var ours, theirs bytes.Buffer
	l := lane.New(config.Lane{Name: "default"}, lane.Env{Log: hclog.NewNullLogger()})
	a := newAccessLog("lanesd.access", false, &ours)
	o := testOutcome()
	a.log(l, o)
	a.Flush()
	h := hclog.New(&hclog.LoggerOptions{Name: "lanesd", Output: &theirs}).Named("access")
	h.Info("request", "lane", "default", "method", "GET", "path", `/a b\x1b[31m`, "status", 200, "bytes", 512, "pid", 42,
		"queue", o.Queue, "filter", o.Filter, "run", o.Run, "total", o.Total)
	// The timestamps differ; the rest must not.
	cut := func(s string) string { return s[strings.IndexByte(s, ' '):] }
	if cut(ours.String()) != cut(theirs.String()) {
		t.Errorf("access line differs from hclog's\n ours:   %q\n hclog:  %q", ours.String(), theirs.String())
	}
	if strings.Contains(ours.String(), "\x1b") {
		t.Error("a control character from the path reached the log")
	}
}

func TestAccessLogJSON(t *testing.T) {
	var out bytes.Buffer
	l := lane.New(config.Lane{Name: "default"}, lane.Env{Log: hclog.NewNullLogger()})
	a := newAccessLog("lanesd.access", true, &out)
	o := testOutcome()
	o.Truncated = true
	a.log(l, o)
	a.Flush()
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("%v: %q", err, out.String())
	}
	if m["@message"] != "request" || m["path"] != "/a b\x1b[31m" || m["status"] != float64(200) || m["failed"] != "truncated" || m["run"] != float64(1500000) {
		t.Errorf("JSON line: %v", m)
	}
}

// Lines are written whole and in order, however many goroutines log.
func TestAccessLogConcurrentWholeLines(t *testing.T) {
	var mu sync.Mutex
	var out bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if len(p) > accessChunk || p[len(p)-1] != '\n' {
			t.Errorf("write of %d bytes not ending a line", len(p))
		}
		return out.Write(p)
	})
	l := lane.New(config.Lane{Name: "default"}, lane.Env{Log: hclog.NewNullLogger()})
	a := newAccessLog("lanesd.access", false, w)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				a.log(l, testOutcome())
			}
		})
	}
	wg.Wait()
	a.Flush()
	if n := strings.Count(out.String(), "\n"); n != 4000 {
		t.Errorf("%d lines, want 4000", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// BenchmarkAccessLog compares a line through hclog with one through
// accessLog (go test -bench AccessLog ./supervisor/).
func BenchmarkAccessLog(b *testing.B) {
	l := lane.New(config.Lane{Name: "default"}, lane.Env{Log: hclog.NewNullLogger()})
	o := testOutcome()
	o.Path = []byte("/static/app.css")
	b.Run("hclog", func(b *testing.B) {
		h := hclog.New(&hclog.LoggerOptions{Name: "lanesd", Output: discard{}}).Named("access")
		b.ReportAllocs()
		for b.Loop() {
			h.Info("request", "lane", l.Name(), "method", string(o.Method), "path", string(o.Path), "status", o.Status,
				"bytes", o.Bytes, "pid", o.PID, "queue", o.Queue, "filter", o.Filter, "run", o.Run, "total", o.Total)
		}
	})
	b.Run("accessLog", func(b *testing.B) {
		a := newAccessLog("lanesd.access", false, discard{})
		b.ReportAllocs()
		for b.Loop() {
			a.log(l, o)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// A line costs no allocation, and neither do the flushes that recycle the
// buffers (counted per 100 lines: a flush comes every ~20).
func TestAccessLogAllocs(t *testing.T) {
	l := lane.New(config.Lane{Name: "default"}, lane.Env{Log: hclog.NewNullLogger()})
	o := testOutcome()
	o.Path = []byte("/static/app.css")
	for _, json := range []bool{false, true} {
		a := newAccessLog("lanesd.access", json, discard{})
		n := testing.AllocsPerRun(200, func() {
			for range 100 {
				a.log(l, o)
			}
		})
		if n != 0 {
			t.Errorf("json=%v: %v allocations per 100 lines, want 0", json, n)
		}
	}
}
