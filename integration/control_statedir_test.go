package integration

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStateDirMappingsSurvive: a runtime mapping added with the API and one
// auto_map learned are saved in state_dir, and a lanesd started again on
// the same config and state_dir has both, mapped and routing. On the way,
// the API refuses a pattern the config would refuse.
func TestStateDirMappingsSurvive(t *testing.T) {
	t.Parallel()
	const hcl = `
debug_headers = true
state_dir     = "state"
app {
  demo = true
}
lane "default" {
  min_workers = 1
}
lane "rt" {
  min_workers = 1
}
lane "slow" {
  min_workers = 1
}
auto_map {
  threshold    = "500ms"
  lane         = "slow"
  from         = ["default"]
  forget_after = "10m"
}
`
	dir := t.TempDir()
	l := startLanesdIn(t, dir, newTmp(t), hcl)
	l.mapTo(t, "rt", "GET", "/demo/echo")
	l.wantLane(t, "/demo/echo", "rt")

	r := l.adminCall(http.MethodPost, "/api/map", map[string]string{"lane": "rt", "method": "get", "pattern": "/x"})
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `write \"GET /x\"`) {
		t.Errorf("POST /api/map with a lowercase method: %s, want 400 saying how the config writes it", r)
	}

	l.mustGet(t, "/demo/sleep/report?ms=700", 200)
	waitFor(t, "GET /demo/sleep/report to be learned", 5*time.Second, func() bool {
		m, ok := findMapping(l.mappings(t), "GET", "/demo/sleep/report")
		return ok && m.Source == "auto_map"
	})
	l.wantLane(t, "/demo/sleep/report?ms=1", "slow")

	l.signal(t, syscall.SIGTERM)
	if code := l.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("lanesd exit %d after SIGTERM; log:\n%s", code, l.Log)
	}
	file := filepath.Join(dir, "state", "mappings.json")
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatalf("no state file after a stop: %v; log:\n%s", err, l.Log)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}

	l2 := startLanesdIn(t, dir, newTmp(t), hcl)
	ms := l2.mappings(t)
	if m, ok := findMapping(ms, "GET", "/demo/echo"); !ok || m.Lane != "rt" || m.Source != "api" {
		t.Errorf("after the restart GET /demo/echo is %+v (found %v), want lane rt, source api", m, ok)
	}
	if m, ok := findMapping(ms, "GET", "/demo/sleep/report"); !ok || m.Lane != "slow" || m.Source != "auto_map" || m.Hits < 1 {
		t.Errorf("after the restart GET /demo/sleep/report is %+v (found %v), want lane slow, source auto_map, its hits kept", m, ok)
	}
	l2.wantLane(t, "/demo/echo", "rt")
	l2.wantLane(t, "/demo/sleep/report?ms=1", "slow")
	l2.wantLane(t, "/demo/sleep/other?ms=1", "default")
	if !strings.Contains(l2.Log.String(), "loaded runtime and learned mappings") {
		t.Errorf("the second lanesd did not log what it loaded; log:\n%s", l2.Log)
	}
}
