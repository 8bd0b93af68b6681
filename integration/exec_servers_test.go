package integration

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Real app servers besides gunicorn as exec workers: uWSGI (which adopts
// the inherited socket by itself and forks its workers) and uvicorn (one
// event loop, which a hung handler wedges for good). Each is skipped where
// it is not installed (make test-deps installs Debian's uwsgi-core,
// uwsgi-plugin-python3 and python3-uvicorn).

// serverHang runs ex as the only worker of a lane with a 2 s hard timeout
// and checks what an operator needs: the app answers, a hung request gets
// 504 in time, the program and every process it forked are gone, and a
// replacement answers.
func serverHang(t *testing.T, ex string, forks int) {
	t.Helper()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers     = 1
  max_workers     = 1
  exec            = %s
  request_timeout = "2s"
  stop_timeout    = "5s"
}
`, ex))
	top := l.readyPIDs(t, "default", 1, 30*time.Second)[0]
	waitFor(t, "the app to answer", 20*time.Second, func() bool {
		r := l.get("/pid")
		return r.err == nil && r.status == http.StatusOK
	})
	var group []int
	waitFor(t, fmt.Sprintf("%d forked workers", forks), 10*time.Second, func() bool {
		group = descendants(top)
		return len(group) == forks
	})
	for _, p := range group {
		if g := procPgid(p); g != top {
			t.Errorf("forked worker %d in process group %d; want the program's %d", p, g, top)
		}
	}
	r := l.get("/hang")
	if r.err != nil || r.status != http.StatusGatewayTimeout {
		t.Fatalf("GET /hang: want 504, got %s", r)
	}
	if r.took > 6*time.Second {
		t.Errorf("GET /hang answered after %v; want soon after request_timeout (2s)", r.took)
	}
	waitGone(t, "the program and its forks after the hard timeout", append([]int{top}, group...), 5*time.Second)
	replaced(t, l, "default", []int{top}, 1, 30*time.Second)
	waitFor(t, "the replacement to answer", 20*time.Second, func() bool {
		r := l.get("/pid")
		return r.err == nil && r.status == http.StatusOK
	})
}

// TestExecUWSGIHang: uWSGI with a master and two forked workers; its
// --protocol http makes it speak HTTP on the socket it adopts from
// LISTEN_FDS.
func TestExecUWSGIHang(t *testing.T) {
	t.Parallel()
	uwsgi, err := exec.LookPath("uwsgi")
	if err != nil {
		t.Skip("uwsgi is not installed (make test-deps installs Debian's uwsgi-core and uwsgi-plugin-python3)")
	}
	if out, err := exec.Command(uwsgi, "--plugin", "python3", "--version").CombinedOutput(); err != nil {
		t.Skipf("uwsgi has no python3 plugin: %v: %s", err, out)
	}
	serverHang(t, fmt.Sprintf(`[%q, "--plugin", "python3", "--protocol", "http", "--wsgi-file", %q, "--callable", "app", "--master", "--processes", "2", "--die-on-term", "--disable-logging"]`,
		uwsgi, wsgiApp(t)), 2)
}

// TestExecUvicornHang: uvicorn on fd 3; a handler that blocks its event
// loop wedges the whole server, and only the kill frees the lane.
func TestExecUvicornHang(t *testing.T) {
	t.Parallel()
	if out, err := exec.Command(debianPython, "-c", "import uvicorn").CombinedOutput(); err != nil {
		t.Skipf("uvicorn is not installed for %s (make test-deps installs Debian's python3-uvicorn): %v: %s", debianPython, err, out)
	}
	app, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	serverHang(t, fmt.Sprintf(`[%q, "-m", "uvicorn", "--fd", "3", "--app-dir", %q, "asgi_app:app"]`, debianPython, app), 0)
}
