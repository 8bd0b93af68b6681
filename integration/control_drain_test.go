package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitReplaced waits until lane has want ready workers, none of them in
// old, and is no longer draining.
func (l *lanesd) waitReplaced(t *testing.T, lane string, old []int, want int) []int {
	t.Helper()
	var now []int
	waitFor(t, "every worker of lane "+lane+" to be replaced", 20*time.Second, func() bool {
		ls := l.lane(t, lane)
		now = ls.PIDs("ready")
		return len(ls.Workers) == want && len(now) == want && disjoint(now, old) && !l.lane(t, lane).Draining
	})
	return now
}

// sawDraining polls the lane's status until it shows draining (true) or
// the drain is already over: it reports whether draining was seen.
func (l *lanesd) sawDraining(t *testing.T, lane string, old []int) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		d := l.lane(t, lane)
		if d.Draining && d.State == "draining" {
			return true
		}
		if disjoint(l.lane(t, lane).PIDs(), old) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

const drainConfig = `
debug_headers = true
app {
  demo = true
}
lane "default" {
  min_workers = 2
  max_workers = 2
  concurrency = 2
}
lane "other" {
  min_workers = 2
  max_workers = 2
  concurrency = 2
  map         = ["GET /demo/sleep/other"]
}
`

// TestControlDrain: a drain through the API and through lanectl, under
// constant load, replaces every worker of the lane with no request
// failing; status shows the lane draining while it runs.
func TestControlDrain(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, drainConfig)
	oldDef, oldOther := l.workerPIDs(t, "default"), l.workerPIDs(t, "other")
	ld := l.startLoad(6, "/demo/sleep?ms=100", "/demo/sleep/other?ms=100", "/")
	waitFor(t, "load to run", 5*time.Second, func() bool { return ld.sentSoFar() > 20 })

	if res := l.drain(t, "default"); res.Lane != "default" || res.Workers != 2 || !res.Started {
		t.Errorf("drain answer %+v: want lane default, 2 workers, started", res)
	}
	if !l.sawDraining(t, "default", oldDef) {
		t.Errorf("status never showed lane default draining")
	}
	newDef := l.waitReplaced(t, "default", oldDef, 2)
	if now := l.workerPIDs(t, "other"); !sameSet(now, oldOther) {
		t.Errorf("draining default replaced workers of other: %v -> %v", oldOther, now)
	}

	code, out := l.lanectl(t, "drain", "other")
	if code != 0 || !strings.Contains(out, "other") {
		t.Errorf("lanectl drain other: exit %d:\n%s", code, out)
	}
	l.waitReplaced(t, "other", oldOther, 2)
	if now := l.workerPIDs(t, "default"); !sameSet(now, newDef) {
		t.Errorf("draining other replaced workers of default: %v -> %v", newDef, now)
	}
	if d := l.lane(t, "default"); d.Drains != 1 || d.State != "ok" {
		t.Errorf("lane default after its drain: drains %d, state %q", d.Drains, d.State)
	}
	for _, pid := range append(oldDef, oldOther...) {
		waitFor(t, "drained worker to exit", 10*time.Second, func() bool { return !alive(pid) })
	}

	// Refusals.
	checkErrorBody(t, "drain of an unknown lane", l.adminCall(http.MethodPost, "/api/lanes/nope/drain", nil))
	checkErrorBody(t, "GET drain", l.adminCall(http.MethodGet, "/api/lanes/default/drain", nil))
	if code, out := l.lanectl(t, "drain", "nope"); code == 0 || !strings.Contains(out, `no lane "nope"`) {
		t.Errorf("lanectl drain nope: exit %d:\n%s", code, out)
	}
	time.Sleep(100 * time.Millisecond)
	ld.finish(t, 100)
}

// TestControlSIGUSR2: SIGUSR2 drains every lane under constant load with
// no request failing; every worker pid is new afterwards.
func TestControlSIGUSR2(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, drainConfig)
	oldDef, oldOther := l.workerPIDs(t, "default"), l.workerPIDs(t, "other")
	ld := l.startLoad(6, "/demo/sleep?ms=100", "/demo/sleep/other?ms=100", "/")
	waitFor(t, "load to run", 5*time.Second, func() bool { return ld.sentSoFar() > 20 })
	l.signal(t, syscall.SIGUSR2)
	l.waitReplaced(t, "default", oldDef, 2)
	l.waitReplaced(t, "other", oldOther, 2)
	time.Sleep(100 * time.Millisecond)
	ld.finish(t, 100)
	for _, pid := range append(oldDef, oldOther...) {
		waitFor(t, "drained worker to exit", 10*time.Second, func() bool { return !alive(pid) })
	}
}

// sameSet reports whether a and b hold the same pids.
func sameSet(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !contains(b, x) {
			return false
		}
	}
	return true
}

// TestControlMaxRequestsRecycle: workers recycled by max_requests (with
// jitter) are replaced before they leave rotation: under constant load no
// request fails, and the workers change.
func TestControlMaxRequestsRecycle(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
lane "default" {
  min_workers         = 2
  max_workers         = 2
  concurrency         = 2
  max_requests        = 40
  max_requests_jitter = 10
}
`)
	old := l.workerPIDs(t, "default")
	ld := l.startLoad(4, "/demo/sleep?ms=5", "/")
	waitFor(t, "every worker to be recycled", 20*time.Second, func() bool {
		return ld.sentSoFar() > 200 && disjoint(l.workerPIDs(t, "default"), old)
	})
	ld.finish(t, 200)
	if ls := l.lane(t, "default"); ls.Respawns < 2 {
		t.Errorf("respawns %d after recycling, want ≥ 2", ls.Respawns)
	}
	if !strings.Contains(l.Log.String(), "reason=max_requests") {
		t.Errorf("the log does not say why workers were replaced")
	}
}

// installBinary puts a copy of src (or, with src "", a program that exits
// at once) at path, atomically, as an operator deploying a worker would.
func installBinary(t *testing.T, path, src string) {
	t.Helper()
	var b []byte
	if src == "" {
		b = []byte("#!/bin/sh\nexit 3\n")
	} else {
		var err error
		if b, err = os.ReadFile(src); err != nil {
			t.Fatal(err)
		}
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestControlDrainBadBinary: rolling out a worker binary that cannot start
// fails no request: the drain gives up and the old workers keep serving.
// Once the binary is fixed, the next drain replaces every worker.
func TestControlDrainBadBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "worker-bin")
	installBinary(t, bin, helloBin)
	l := startLanesdIn(t, dir, newTmp(t), fmt.Sprintf(`
app {
  demo = true
}
lane "default" {
  min_workers = 2
  max_workers = 2
  command     = [%q]
}
`, bin))
	old := l.workerPIDs(t, "default")
	ld := l.startLoad(4, "/hello/x")
	waitFor(t, "load to run", 5*time.Second, func() bool { return ld.sentSoFar() > 20 })

	installBinary(t, bin, "")
	if code, out := l.lanectl(t, "drain", "default"); code != 0 {
		t.Fatalf("lanectl drain: exit %d:\n%s", code, out)
	}
	waitFor(t, "the drain to give up", 20*time.Second, func() bool { return !l.lane(t, "default").Draining })
	if !strings.Contains(l.Log.String(), "drain stopped") {
		t.Errorf("the log does not say the drain gave up")
	}
	if now := l.workerPIDs(t, "default"); !sameSet(now, old) {
		t.Errorf("after a drain onto a broken binary the workers are %v, want the old ones %v", now, old)
	}

	installBinary(t, bin, helloBin)
	if code, out := l.lanectl(t, "drain", "default"); code != 0 {
		t.Fatalf("lanectl drain: exit %d:\n%s", code, out)
	}
	l.waitReplaced(t, "default", old, 2)
	time.Sleep(100 * time.Millisecond)
	ld.finish(t, 50)
}
