package integration

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runDirs returns lanesd run directories under tmp, by the pid in their
// owner file.
func runDirs(t *testing.T, tmp string) map[int]string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(tmp, "lanes-*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			out[pid] = d
		}
	}
	return out
}

func allPIDs(t *testing.T, l *lanesd) []int {
	t.Helper()
	var pids []int
	for _, ls := range l.status(t).Lanes {
		pids = append(pids, ls.PIDs()...)
	}
	return pids
}

// TestSIGTERMFinishesInFlight: a graceful stop refuses new connections,
// lets the running request finish with its whole body, stops every worker,
// cleans up its run directory and exits 0.
func TestSIGTERMFinishesInFlight(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
lane "default" {
  min_workers = 2
}
`)
	pids := allPIDs(t, l)
	kids := descendants(l.PID)
	inflight := make(chan result, 1)
	go func() { inflight <- l.get("/demo/sleep?ms=1500") }()
	waitFor(t, "the request to be in flight", 5*time.Second, func() bool { return l.lane(t, "default").Inflight == 1 })
	time.Sleep(300 * time.Millisecond)
	l.signal(t, syscall.SIGTERM)
	signalled := time.Now()

	// New connections are refused while the request still runs.
	var refusedAt time.Time
	for time.Since(signalled) < 5*time.Second {
		c, err := net.DialTimeout("tcp", l.Front, time.Second)
		if err != nil {
			refusedAt = time.Now()
			break
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if refusedAt.IsZero() {
		t.Errorf("front still accepts connections 5s after SIGTERM")
	}

	r := <-inflight
	done := time.Now()
	if r.err != nil || r.status != 200 {
		t.Fatalf("in-flight request across SIGTERM: want 200 with its body, got %s", r)
	}
	if !refusedAt.IsZero() && refusedAt.After(done) {
		t.Errorf("new connections were refused only after the in-flight request ended (%v after)", refusedAt.Sub(done))
	}
	t.Logf("connections refused %v after SIGTERM; in-flight request done %v after", refusedAt.Sub(signalled).Round(time.Millisecond), done.Sub(signalled).Round(time.Millisecond))

	if code := l.wait(t, 15*time.Second); code != 0 {
		t.Errorf("lanesd exit status %d after SIGTERM; want 0", code)
	}
	for _, pid := range append(pids, kids...) {
		if alive(pid) {
			t.Errorf("process %d (worker of lanesd) alive after lanesd exited", pid)
		}
	}
	if dirs := runDirs(t, l.tmp); len(dirs) > 0 {
		t.Errorf("run directories left after a graceful stop: %v", dirs)
	}
}

// TestSignalToTheGroup: a terminal's Ctrl-C, timeout(1) and a shell's
// `kill -TERM -PGID` signal a whole process group. Only lanesd may act on
// it: its workers, in a group of their own, finish the request in flight and
// stop when lanesd stops them, instead of dying of the signal themselves.
func TestSignalToTheGroup(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
lane "default" {
  min_workers = 1
}
`)
	// A POST: a GET whose worker died would be retried on another.
	inflight := make(chan result, 1)
	go func() { inflight <- do(l.client, http.MethodPost, l.URL("/demo/sleep?ms=1000"), nil, nil) }()
	waitFor(t, "the request to be in flight", 5*time.Second, func() bool { return l.lane(t, "default").Inflight == 1 })
	if err := syscall.Kill(-l.PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if r := <-inflight; r.err != nil || r.status != 200 {
		t.Fatalf("in-flight request across SIGTERM to the group: want 200, got %s", r)
	}
	if code := l.wait(t, 15*time.Second); code != 0 {
		t.Errorf("lanesd exit status %d after SIGTERM to the group; want 0", code)
	}
	if strings.Contains(l.Log.String(), "signal: terminated") {
		t.Errorf("a worker died of the group's SIGTERM:\n%s", l.Log)
	}
}

// TestSIGTERMToEveryProcess: systemd's default KillMode=control-group sends
// SIGTERM to every process of the service at once, workers included. The
// workers leave their stop to lanesd: the request in flight finishes.
func TestSIGTERMToEveryProcess(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
lane "default" {
  min_workers = 1
}
`)
	// A POST: a GET whose worker died would be retried on another.
	inflight := make(chan result, 1)
	go func() { inflight <- do(l.client, http.MethodPost, l.URL("/demo/sleep?ms=1000"), nil, nil) }()
	waitFor(t, "the request to be in flight", 5*time.Second, func() bool { return l.lane(t, "default").Inflight == 1 })
	for _, pid := range append([]int{l.PID}, descendants(l.PID)...) {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	if r := <-inflight; r.err != nil || r.status != 200 {
		t.Fatalf("in-flight request across SIGTERM to every process: want 200, got %s", r)
	}
	if code := l.wait(t, 15*time.Second); code != 0 {
		t.Errorf("lanesd exit status %d; want 0", code)
	}
}

// TestSIGKILLLeavesNoChild: when lanesd dies by SIGKILL every worker goes
// with it, and the next lanesd removes the dead one's run directory.
func TestSIGKILLLeavesNoChild(t *testing.T) {
	t.Parallel()
	hcl := `
app {
  demo = true
}
lane "default" {
  min_workers = 2
}
lane "other" {
  min_workers = 3
  map         = ["GET /other/*"]
}
`
	tmp := newTmp(t)
	l := startLanesdIn(t, t.TempDir(), tmp, hcl)
	pids := allPIDs(t, l)
	kids := descendants(l.PID)
	if len(pids) < 5 {
		t.Fatalf("want ≥ 5 workers, got %v", pids)
	}
	for _, p := range pids {
		if !contains(kids, p) {
			t.Errorf("worker %d is not a child of lanesd %d (children: %v)", p, l.PID, kids)
		}
	}
	dead := l.PID
	if _, ok := runDirs(t, tmp)[dead]; !ok {
		t.Fatalf("no run directory owned by %d in %s", dead, tmp)
	}

	l.signal(t, syscall.SIGKILL)
	killed := time.Now()
	l.wait(t, 5*time.Second)
	all := append(append([]int(nil), pids...), kids...)
	waitFor(t, "every process of the killed lanesd to be gone", 5*time.Second, func() bool {
		for _, p := range all {
			if alive(p) {
				return false
			}
		}
		return true
	})
	t.Logf("all %d processes of lanesd gone %v after its SIGKILL", len(all), time.Since(killed).Round(time.Millisecond))

	if _, ok := runDirs(t, tmp)[dead]; !ok {
		t.Fatalf("the SIGKILLed lanesd's run directory is already gone; nothing left to test")
	}
	l2 := startLanesdIn(t, t.TempDir(), tmp, hcl)
	l2.mustGet(t, "/", 200)
	if d, ok := runDirs(t, tmp)[dead]; ok {
		t.Errorf("stale run directory %s of the killed lanesd %d not removed by the next lanesd", d, dead)
	}
	if _, ok := runDirs(t, tmp)[l2.PID]; !ok {
		t.Errorf("the running lanesd %d has no run directory in %s", l2.PID, tmp)
	}
}

// TestSIGQUITStopsAtOnce: SIGQUIT stops without waiting for the running
// request, and takes the workers with it.
func TestSIGQUITStopsAtOnce(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
`)
	pids := allPIDs(t, l)
	kids := descendants(l.PID)
	inflight := make(chan result, 1)
	go func() { inflight <- l.get("/demo/sleep?ms=10000") }()
	waitFor(t, "the request to be in flight", 5*time.Second, func() bool { return l.lane(t, "default").Inflight == 1 })
	l.signal(t, syscall.SIGQUIT)
	quit := time.Now()
	l.wait(t, 5*time.Second)
	t.Logf("lanesd exited %v after SIGQUIT", time.Since(quit).Round(time.Millisecond))
	r := <-inflight
	if r.err == nil && r.status == 200 {
		t.Errorf("in-flight request completed across SIGQUIT (%s); want it cut", r)
	}
	if r.took > 8*time.Second {
		t.Errorf("in-flight request ended %v after it started; SIGQUIT should cut it at once", r.took)
	}
	for _, pid := range append(pids, kids...) {
		waitFor(t, "worker "+strconv.Itoa(pid)+" to be gone", 5*time.Second, func() bool { return !alive(pid) })
	}
}

// TestSIGHUPKeepsServing: SIGHUP does not stop lanesd.
func TestSIGHUPKeepsServing(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
`)
	l.signal(t, syscall.SIGHUP)
	waitFor(t, "lanesd to log about SIGHUP", 5*time.Second, func() bool {
		s := strings.ToLower(l.Log.String())
		return strings.Contains(s, "sighup") || strings.Contains(s, "reload")
	})
	time.Sleep(200 * time.Millisecond)
	if !l.Running() {
		t.Fatalf("lanesd exited after SIGHUP: %v", l.Err())
	}
	for range 5 {
		l.mustGet(t, "/", 200)
	}
	if _, err := l.tryStatus(); err != nil {
		t.Errorf("admin after SIGHUP: %v", err)
	}
}
