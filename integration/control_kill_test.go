package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// logRecord returns the log record (its first line and the indented
// continuation lines hclog writes for multi-line values) whose first line
// contains all of subs, or "".
func logRecord(log string, subs ...string) string {
	lines := strings.Split(log, "\n")
	for i, line := range lines {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if !ok {
			continue
		}
		rec := []string{line}
		for _, next := range lines[i+1:] {
			if next == "" || !(strings.HasPrefix(next, " ") || strings.HasPrefix(next, "\t")) {
				break
			}
			rec = append(rec, next)
		}
		return strings.Join(rec, "\n")
	}
	return ""
}

// TestControlTwoPhaseKill: a hung request is answered 504 promptly; its
// worker is killed and replaced, and the kill's log record holds the
// request (pid, method, path) and the goroutine stacks the worker printed
// on SIGQUIT.
func TestControlTwoPhaseKill(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
lane "default" {
  min_workers     = 1
  max_workers     = 1
  request_timeout = "500ms"
}
`)
	pid := l.workerPIDs(t, "default")[0]
	r := l.get("/demo/hang")
	if r.err != nil || r.status != 504 {
		t.Fatalf("GET /demo/hang: want 504, got %s", r)
	}
	if r.took > 3*time.Second {
		t.Errorf("the 504 came %v after the request, for a 500ms request_timeout", r.took)
	}
	var rec string
	waitFor(t, "the kill's log record", 10*time.Second, func() bool {
		rec = logRecord(l.Log.String(), "worker killed", fmt.Sprintf("pid=%d", pid))
		return rec != ""
	})
	// One line: the request, where its handler hung, and the file that
	// holds the goroutine stacks the worker printed on SIGQUIT.
	for _, s := range []string{"method=GET", "path=/demo/hang", "wchan=", "where=", "app.(*demo)", "stacks="} {
		if !strings.Contains(rec, s) {
			t.Errorf("the kill record lacks %q:\n%s", s, rec)
		}
	}
	if strings.Contains(rec, "\n") || len(rec) > 4<<10 {
		t.Errorf("the kill record is %d bytes over several lines; want one line", len(rec))
	}
	m := regexp.MustCompile(`stacks=(\S+)`).FindStringSubmatch(rec)
	if m == nil {
		t.Fatalf("no stacks file in %s", rec)
	}
	b, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatalf("the stacks file the kill record names: %v", err)
	}
	for _, s := range []string{"goroutine ", "[select"} {
		if !strings.Contains(string(b), s) {
			t.Errorf("the stacks file lacks %q", s)
		}
	}
	waitFor(t, "the hung worker to be gone", 5*time.Second, func() bool { return !alive(pid) })
	waitFor(t, "a new worker", 10*time.Second, func() bool {
		ps := l.workerPIDs(t, "default")
		return len(ps) == 1 && ps[0] != pid
	})
	l.mustGet(t, "/", 200)
	if ls := l.lane(t, "default"); ls.Timeouts != 1 || ls.Killed != 1 {
		t.Errorf("status after the kill: timeouts %d, killed %d; want 1, 1", ls.Timeouts, ls.Killed)
	}
}

// TestControlMetrics: GET /metrics is Prometheus text whose every name
// starts with lanes_, with requests by lane and code, the time histograms,
// queue depth, workers by state and the auto_map counters.
func TestControlMetrics(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
lane "default" {
  min_workers = 1
}
lane "slow" {
  min_workers = 1
  max_workers = 2
}
auto_map {
  threshold = "200ms"
  lane      = "slow"
}
`)
	l.mustGet(t, "/", 200)
	l.mustGet(t, "/", 200)
	l.mustGet(t, "/nope", 404)
	l.mustGet(t, "/demo/sleep/learn-me?ms=300", 200)
	waitFor(t, "the slow request to be learned", 5*time.Second, func() bool { return len(learned(l.mappings(t))) == 1 })

	// Raw HTTP: the Content-Type is part of what is checked.
	r := l.adminCall(http.MethodGet, "/metrics", nil)
	if r.err != nil || r.status != 200 {
		t.Fatalf("GET /metrics: want 200, got %s", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics Content-Type %q, want text/plain (the text exposition format)", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v\n%s", err, r.body)
	}
	for name := range fams {
		if !strings.HasPrefix(name, "lanes_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s is not prefixed lanes_", name)
		}
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		f := fams[name]
		if f == nil {
			return 0, false
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
			return m.GetUntyped().GetValue(), true
		}
		return 0, false
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"lanes_requests_total", map[string]string{"lane": "default", "code": "200"}, 2},
		{"lanes_requests_total", map[string]string{"lane": "default", "code": "404"}, 1},
		{"lanes_request_queue_seconds", map[string]string{"lane": "default"}, 4},
		{"lanes_request_run_seconds", map[string]string{"lane": "default"}, 4},
		{"lanes_request_total_seconds", map[string]string{"lane": "default"}, 4},
		{"lanes_request_filter_seconds", map[string]string{"lane": "default"}, 4},
		{"lanes_queue_depth", map[string]string{"lane": "slow"}, 0},
		{"lanes_inflight", map[string]string{"lane": "default"}, 0},
		{"lanes_workers", map[string]string{"lane": "default", "state": "ready"}, 1},
		{"lanes_workers", map[string]string{"lane": "slow", "state": "ready"}, 1},
		{"lanes_min_workers", map[string]string{"lane": "slow"}, 1},
		{"lanes_max_workers", map[string]string{"lane": "slow"}, 2},
		{"lanes_rejected_total", map[string]string{"lane": "default"}, 0},
		{"lanes_timeouts_total", map[string]string{"lane": "default"}, 0},
		{"lanes_kills_total", map[string]string{"lane": "default"}, 0},
		{"lanes_respawns_total", map[string]string{"lane": "default"}, 0},
		{"lanes_drains_total", map[string]string{"lane": "default"}, 0},
		{"lanes_automap_entries", nil, 1},
		{"lanes_automap_learned_total", nil, 1},
		{"lanes_automap_forgotten_total", nil, 0},
		{"lanes_automap_evicted_total", nil, 0},
	} {
		v, ok := value(tc.name, tc.labels)
		if !ok {
			t.Errorf("/metrics has no %s%v", tc.name, tc.labels)
		} else if v < tc.min {
			t.Errorf("%s%v = %v, want ≥ %v", tc.name, tc.labels, v, tc.min)
		}
	}
	if f := fams["lanes_request_total_seconds"]; f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("lanes_request_total_seconds is not a histogram")
	}
	// The supervisor process's own metrics, as every Go exporter has them.
	for _, name := range []string{"go_goroutines", "go_memstats_mallocs_total", "process_open_fds", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
	// Metrics are read at scrape time: the next scrape has the next request.
	l.mustGet(t, "/", 200)
	m := l.metricsText(t)
	if !regexp.MustCompile(`(?m)^lanes_requests_total\{code="200",lane="default"\} 4$`).MatchString(m) {
		t.Errorf("after a fourth 200, /metrics does not count 4:\n%s", grepLines(m, "lanes_requests_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
