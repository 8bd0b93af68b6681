package supervisor

import (
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// hookLog calls hook with every Info message, on the caller's goroutine,
// before hclog takes its lock: a hook may send requests through the front
// while the logging code waits.
type hookLog struct {
	hclog.Logger
	hook func(msg string)
}

func (h hookLog) Info(msg string, args ...any) { h.hook(msg); h.Logger.Info(msg, args...) }
func (h hookLog) Named(name string) hclog.Logger {
	return hookLog{h.Logger.Named(name), h.hook}
}
func (h hookLog) ResetNamed(name string) hclog.Logger {
	return hookLog{h.Logger.ResetNamed(name), h.hook}
}
func (h hookLog) With(args ...any) hclog.Logger { return hookLog{h.Logger.With(args...), h.hook} }

const reloadLanes = `
lane "default" {
  min_workers = 1
  command = [CMD]
}
lane "a" {
  min_workers = 1
  command = [CMD]
  map = ["GET /a"]
}
lane "b" {
  min_workers = 1
  command = [CMD]
  map = ["GET /b"]
}
`

// TestReloadIsOneSwap: a reload that removes lane a and moves lane b
// first sends every request by one whole state, the old or the new, even
// one that arrives while the mapping package reports the reload: GET /b
// runs in lane b, GET /a in lane a (old) or default (new). The hook runs
// between the two stores of a reload that swaps the table and the lanes
// separately, where a lane index of the new table picked a lane of the
// old list.
func TestReloadIsOneSwap(t *testing.T) {
	var (
		s      *Supervisor
		once   sync.Once
		mu     sync.Mutex
		bodies = map[string]string{}
	)
	hook := func(msg string) {
		if !strings.Contains(msg, "static mappings replaced") {
			return
		}
		once.Do(func() {
			for _, p := range []string{"/a", "/b"} {
				_, body, _ := get(t, s, p)
				mu.Lock()
				bodies[p] = body
				mu.Unlock()
			}
		})
	}
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: tWriter{t}})
	s = startLogging(t, reloadLanes, hookLog{log, hook})
	for p, lane := range map[string]string{"/a": "a", "/b": "b", "/x": "default"} {
		if _, body, _ := get(t, s, p); !strings.Contains(body, "lane "+lane+",") {
			t.Fatalf("before the reload, GET %s: %q, want lane %s", p, body, lane)
		}
	}

	file := s.state.Load().cfg.File
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(src), `lane "default"`)
	nu := string(src[:i]) + strings.ReplaceAll(`
lane "b" {
  min_workers = 1
  command = [CMD]
  map = ["GET /b"]
}
lane "default" {
  min_workers = 1
  command = [CMD]
}
`, "CMD", `"`+helloWorker+`"`)
	if err := os.WriteFile(file, []byte(nu), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 2 {
		t.Fatalf("the hook did not run during the reload: %v", bodies)
	}
	if b := bodies["/b"]; !strings.Contains(b, "lane b,") {
		t.Errorf("GET /b during the reload: %q, want lane b", b)
	}
	if a := bodies["/a"]; !strings.Contains(a, "lane a,") && !strings.Contains(a, "lane default,") {
		t.Errorf("GET /a during the reload: %q, want lane a or default", a)
	}
	for p, lane := range map[string]string{"/a": "default", "/b": "b", "/x": "default"} {
		if _, body, _ := get(t, s, p); !strings.Contains(body, "lane "+lane+",") {
			t.Errorf("after the reload, GET %s: %q, want lane %s", p, body, lane)
		}
	}
}

// TestShutdownStopsRetiringLanes: a lane a reload removed while it ran a
// request finishes that request, and a shutdown that comes meanwhile
// stops the lane's workers too before Run returns.
func TestShutdownStopsRetiringLanes(t *testing.T) {
	s, stop := startStoppable(t, `
lane "default" {
  min_workers = 1
  command = [CMD]
}
lane "a" {
  min_workers = 1
  command = [CMD]
  map = ["GET /hello/sleep"]
}
`, hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: tWriter{t}}))
	var pids []int
	for _, w := range laneStatus(s, "a").Workers {
		pids = append(pids, w.PID)
	}
	type answer struct {
		code int
		body string
	}
	long := make(chan answer, 1)
	go func() {
		code, body, _ := get(t, s, "/hello/sleep?d=1s")
		long <- answer{code, body}
	}()
	waitFor(t, "a request in flight on lane a", 5*time.Second, func() bool { return laneStatus(s, "a").Inflight == 1 })

	file := s.state.Load().cfg.File
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, src[:strings.Index(string(src), `lane "a"`)], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if a := <-long; a.code != 200 || !strings.Contains(a.body, "lane a,") {
		t.Errorf("the request in flight on the removed lane: %d %q", a.code, a.body)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("worker %d of the removed lane outlived Run (kill 0: %v)", pid, err)
		}
	}
}

// tWriter writes log lines to the test log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
