package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

const reloadBase = `
debug_headers = true
app {
  demo = true
}
lane "default" {
  min_workers = 2
  max_workers = 2
  concurrency = %d
}
%s
`

const otherLane = `
lane "other" {
  min_workers = 1
  max_workers = 1
  map         = ["GET /demo/sleep/other"]
}
`

const extraLane = `
lane "extra" {
  min_workers = 1
  max_workers = 1
  map         = ["GET /demo/sleep/extra"]
}
`

var reloadDiagRE = regexp.MustCompile(`lanes\.hcl:\d+,\d+`)

// refusalBody decodes the body of a refused admin call.
func refusalBody(t *testing.T, r result) api.ErrorBody {
	t.Helper()
	var e api.ErrorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("refusal %s: %v", r, err)
	}
	return e
}

// TestControlReload: under constant load, with no request failing,
//   - SIGHUP with a lane's concurrency changed replaces that lane's
//     workers (and no other's);
//   - POST /api/reload adding a lane starts it, says so, and mappings to
//     it (static and runtime) work;
//   - lanectl reload removing a lane sends its requests to default and
//     stops its workers.
func TestControlReload(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(reloadBase, 1, otherLane))
	oldDef, oldOther := l.workerPIDs(t, "default"), l.workerPIDs(t, "other")
	ld := l.startLoad(6, "/demo/sleep?ms=50", "/demo/sleep/other?ms=50", "/")
	waitFor(t, "load to run", 5*time.Second, func() bool { return ld.sentSoFar() > 20 })

	// A changed lane: its workers are drained onto new ones.
	l.writeConfig(t, fmt.Sprintf(reloadBase, 2, otherLane))
	l.signal(t, syscall.SIGHUP)
	l.waitLog(t, 10*time.Second, "reloaded")
	l.waitReplaced(t, "default", oldDef, 2)
	if d := l.lane(t, "default"); d.Concurrency != 2 {
		t.Errorf("lane default concurrency after reload: %d, want 2", d.Concurrency)
	}
	if now := l.workerPIDs(t, "other"); !sameSet(now, oldOther) {
		t.Errorf("a reload that did not change lane other replaced its workers: %v -> %v", oldOther, now)
	}

	// A new lane.
	l.writeConfig(t, fmt.Sprintf(reloadBase, 2, otherLane+extraLane))
	a := l.reload(t)
	if !slices.Contains(a.Changed, "lane extra: added") {
		t.Errorf("POST /api/reload answer does not say lane extra was added: %q", a.Changed)
	}
	if ls := l.lane(t, "extra"); len(ls.PIDs("ready")) != 1 {
		t.Errorf("lane extra after reload: %+v", ls.Workers)
	}
	l.wantLane(t, "/demo/sleep/extra?ms=1", "extra")
	l.mapTo(t, "extra", "GET", "/demo/echo")
	l.wantLane(t, "/demo/echo", "extra")

	// A removed lane: its requests go to default, its workers stop once
	// the request they run has ended, whole.
	long := make(chan result, 1)
	go func() { long <- l.get("/demo/sleep/other?ms=1500") }()
	waitFor(t, "a long request in flight on lane other", 5*time.Second, func() bool {
		return l.lane(t, "other").Inflight > 0
	})
	l.writeConfig(t, fmt.Sprintf(reloadBase, 2, extraLane))
	code, out := l.lanectl(t, "reload")
	if code != 0 || !strings.Contains(out, "lane other: removed") {
		t.Errorf("lanectl reload removing lane other: exit %d:\n%s", code, out)
	}
	l.wantLane(t, "/demo/sleep/other?ms=1", "default")
	for _, pid := range oldOther {
		waitFor(t, "the removed lane's worker to exit", 15*time.Second, func() bool { return !alive(pid) })
	}
	for _, ls := range l.status(t).Lanes {
		if ls.Name == "other" {
			t.Errorf("removed lane still in status")
		}
	}
	if r := <-long; r.err != nil || r.status != 200 || r.header.Get("X-Lane") != "other" {
		t.Errorf("request in flight on a lane a reload removed: %s (lane %q)", r, r.header.Get("X-Lane"))
	}
	time.Sleep(200 * time.Millisecond)
	ld.finish(t, 100)
}

// laneLanes is a config of lanes that each answer /demo/lane/NAME: a
// lane's block is laneBlock with its name.
const laneLanes = `
debug_headers = true
app {
  demo = true
}
%s
`

const laneBlock = `
lane %q {
  min_workers = %d
  max_workers = %[2]d
  map         = ["GET /demo/lane/%[1]s"]
}
`

// laneConfig is laneLanes with the named lanes in that order; default has
// two workers, the others one.
func laneConfig(names ...string) string {
	var b strings.Builder
	for _, n := range names {
		workers := 1
		if n == "default" {
			workers = 2
		}
		fmt.Fprintf(&b, laneBlock, n, workers)
	}
	return fmt.Sprintf(laneLanes, b.String())
}

// TestControlReloadRemovesAndReorders: under load, reloads that remove a
// lane and then reorder the lanes, again and again, misroute no request:
// the worker that answers (/demo/lane names its own lane) is of the lane
// the old or the new config maps the path to — never one a stale index
// picks — and the front's X-Lane says the same.
func TestControlReloadRemovesAndReorders(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, laneConfig("default", "a", "b", "c"))
	oldA := l.workerPIDs(t, "a")
	ok := map[string][]string{ // path → the lanes it may run in
		"/demo/lane/a?ms=5": {"a", "default"}, // a is removed
		"/demo/lane/b?ms=5": {"b"},
		"/demo/lane/c?ms=5": {"c"},
		"/demo/lane/x?ms=5": {"default"},
	}
	check := func(path string, r result) string {
		lane, found := strings.CutPrefix(strings.TrimSpace(string(r.body)), "lane ")
		switch {
		case !found:
			return fmt.Sprintf("answer %q does not name a lane", r.body)
		case !slices.Contains(ok[path], lane):
			return fmt.Sprintf("ran in lane %q, want one of %q", lane, ok[path])
		case r.header.Get("X-Lane") != lane:
			return fmt.Sprintf("the worker of lane %q answered, but X-Lane says %q", lane, r.header.Get("X-Lane"))
		}
		return ""
	}
	var paths []string
	for p := range ok {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	ld := l.startCheckedLoad(8, check, paths...)
	waitFor(t, "load to run", 5*time.Second, func() bool { return ld.sentSoFar() > 40 })

	// Removal: a's requests go to default, its worker stops.
	l.writeConfig(t, laneConfig("default", "b", "c"))
	if a := l.reload(t); !slices.Contains(a.Changed, "lane a: removed; draining") {
		t.Errorf("reload removing lane a: %q", a.Changed)
	}
	for _, pid := range oldA {
		waitFor(t, "the removed lane's worker to exit", 15*time.Second, func() bool { return !alive(pid) })
	}

	// Reorders: every lane's index changes, back and forth, under load.
	for i, order := range [][]string{{"c", "default", "b"}, {"b", "c", "default"}, {"default", "b", "c"}, {"c", "b", "default"}} {
		sent := ld.sentSoFar()
		l.writeConfig(t, laneConfig(order...))
		l.reload(t)
		waitFor(t, fmt.Sprintf("load after reorder %d", i), 5*time.Second, func() bool { return ld.sentSoFar() > sent+20 })
	}
	l.wantLane(t, "/demo/lane/a", "default")
	l.wantLane(t, "/demo/lane/c", "c")
	ld.finish(t, 200)
}

// TestControlReloadRefused: a config with errors, or one that changes
// what cannot change while lanesd runs, is refused whole — by SIGHUP (the
// log has the FILE:LINE,COL diagnostic), POST /api/reload (4xx with the
// diagnostics) and lanectl reload (prints them, exits non-zero) — and
// lanesd serves on, unchanged, with no request failing.
func TestControlReloadRefused(t *testing.T) {
	t.Parallel()
	good := fmt.Sprintf(reloadBase, 1, otherLane)
	l := startLanesd(t, good)
	pids := allPIDs(t, l)
	maps := mappingKeys(l.mappings(t))
	ld := l.startLoad(4, "/demo/sleep?ms=20", "/demo/sleep/other?ms=20")
	waitFor(t, "load to run", 5*time.Second, func() bool { return ld.sentSoFar() > 10 })

	syntax := strings.Replace(fmt.Sprintf(reloadBase, 2, otherLane), `lane "other" {`, `lane "other" {{`, 1)
	unknownLane := fmt.Sprintf(reloadBase, 2, otherLane) + `
auto_map {
  threshold = "1s"
  lane      = "nope"
}
`
	for _, tc := range []struct {
		name, hcl string
		says      string
	}{
		{"syntax error", syntax, ""},
		{"unknown lane", unknownLane, "nope"},
	} {
		l.writeConfig(t, tc.hcl)
		refused := l.Log.Count("reload refused")
		diags := len(reloadDiagRE.FindAllString(l.Log.String(), -1))
		l.signal(t, syscall.SIGHUP)
		waitFor(t, tc.name+": SIGHUP to be refused", 10*time.Second, func() bool { return l.Log.Count("reload refused") > refused })
		if !l.Running() {
			t.Fatalf("%s: lanesd exited after SIGHUP", tc.name)
		}
		if len(reloadDiagRE.FindAllString(l.Log.String(), -1)) <= diags || !strings.Contains(l.Log.String(), tc.says) {
			t.Errorf("%s: the log has no FILE:LINE,COL diagnostic", tc.name)
		}

		r := l.adminCall(http.MethodPost, "/api/reload", nil)
		checkErrorBody(t, tc.name+": POST /api/reload", r)
		a := refusalBody(t, r)
		if len(a.Diagnostics) == 0 || !reloadDiagRE.MatchString(a.Diagnostics[0]) || !strings.Contains(strings.Join(a.Diagnostics, "\n"), tc.says) {
			t.Errorf("%s: POST /api/reload diagnostics %q; want FILE:LINE,COL ones naming %q", tc.name, a.Diagnostics, tc.says)
		}

		code, out := l.lanectl(t, "reload")
		t.Logf("%s: lanectl reload says:\n%s", tc.name, out)
		if code == 0 || !reloadDiagRE.MatchString(out) || !strings.Contains(out, tc.says) {
			t.Errorf("%s: lanectl reload: exit %d, want non-zero with the diagnostics:\n%s", tc.name, code, out)
		}
	}

	// A change of listen is refused whole, even with other changes in it.
	l.writeConfig(t, fmt.Sprintf(reloadBase, 2, otherLane+extraLane))
	path := filepath.Join(l.Dir, "lanes.hcl")
	b, _ := os.ReadFile(path)
	b = []byte(strings.Replace(string(b), `listen = "127.0.0.1:0"`, `listen = "localhost:0"`, 1))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := l.adminCall(http.MethodPost, "/api/reload", nil)
	checkErrorBody(t, "listen change", r)
	if a := refusalBody(t, r); !strings.Contains(a.Error, "listen") {
		t.Errorf("listen change refused without saying why: %q", a.Error)
	}
	if code, out := l.lanectl(t, "reload"); code == 0 || !strings.Contains(out, "listen") {
		t.Errorf("lanectl reload of a listen change: exit %d:\n%s", code, out)
	}

	// Nothing changed.
	if got := allPIDs(t, l); !sameSet(got, pids) {
		t.Errorf("refused reloads changed the workers: %v -> %v", pids, got)
	}
	if got := mappingKeys(l.mappings(t)); !slices.Equal(got, maps) {
		t.Errorf("refused reloads changed the mappings: %v -> %v", maps, got)
	}
	if d := l.lane(t, "default"); d.Concurrency != 1 {
		t.Errorf("refused reloads changed default's concurrency to %d", d.Concurrency)
	}
	for _, ls := range l.status(t).Lanes {
		if ls.Name == "extra" {
			t.Errorf("a refused reload added lane extra")
		}
	}
	l.wantLane(t, "/demo/sleep/other?ms=1", "other")
	ld.finish(t, 20)

	// And the good config still reloads afterwards.
	l.writeConfig(t, good)
	l.reload(t)
}

// TestControlReloadRaisesConcurrency: a reload that raises a lane's
// concurrency while requests queue for it fails none of them: the old
// workers, until they are drained, are not given more requests than they
// were started for.
func TestControlReloadRaisesConcurrency(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(reloadBase, 1, ""))
	old := l.workerPIDs(t, "default")
	ld := l.startLoad(12, "/demo/sleep?ms=50")
	waitFor(t, "load to run", 5*time.Second, func() bool { return ld.sentSoFar() > 20 })
	l.writeConfig(t, fmt.Sprintf(reloadBase, 8, ""))
	l.signal(t, syscall.SIGHUP)
	l.waitLog(t, 10*time.Second, "reloaded")
	l.waitReplaced(t, "default", old, 2)
	time.Sleep(300 * time.Millisecond)
	ld.finish(t, 50)
	if s := l.Log.String(); strings.Contains(s, "no free connections") {
		t.Errorf("an old worker was given more requests than its connections:\n%s", grepLines(s, "no free connections"))
	}
}

// TestControlReloadLaneCannotStart: a reload adding a lane whose workers
// cannot start is refused whole: no lane added, no mapping changed, no
// process left, and the running lanes keep their workers.
func TestControlReloadLaneCannotStart(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(reloadBase, 1, otherLane))
	pids := allPIDs(t, l)
	maps := mappingKeys(l.mappings(t))
	l.writeConfig(t, fmt.Sprintf(reloadBase, 2, otherLane+`
lane "broken" {
  min_workers = 1
  command     = ["/bin/false"]
  map         = ["GET /demo/sleep/broken"]
}
`))
	r := l.adminCall(http.MethodPost, "/api/reload", nil)
	checkErrorBody(t, "reload with a lane that cannot start", r)
	if a := refusalBody(t, r); !strings.Contains(a.Error, "broken") {
		t.Errorf("refusal does not name the lane: %q", a.Error)
	}
	for _, ls := range l.status(t).Lanes {
		if ls.Name == "broken" {
			t.Errorf("a refused reload left lane broken in status")
		}
	}
	if got := allPIDs(t, l); !sameSet(got, pids) {
		t.Errorf("a refused reload changed the workers: %v -> %v", pids, got)
	}
	if got := mappingKeys(l.mappings(t)); !slices.Equal(got, maps) {
		t.Errorf("a refused reload changed the mappings: %v -> %v", maps, got)
	}
	if d := l.lane(t, "default"); d.Concurrency != 1 {
		t.Errorf("a refused reload changed default's concurrency to %d", d.Concurrency)
	}
	waitFor(t, "no process but the workers", 5*time.Second, func() bool { return sameSet(descendants(l.PID), pids) })
	l.wantLane(t, "/demo/sleep/broken?ms=1", "default")
}
