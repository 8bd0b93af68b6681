package integration

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Real app servers besides gunicorn as exec workers: uWSGI (which adopts
// the inherited socket by itself and forks its workers), uvicorn and node
// (one event loop, which a hung handler wedges for good), PHP's built-in
// server (a port) and puma. Each is skipped where it is not installed
// (make test-deps installs them from Debian).

// serverHang runs ex as the only worker of a lane with a 2 s hard timeout
// and checks what an operator needs: the app answers, a hung request gets
// 504 in time, the program and every process it forked are gone, and a
// replacement answers.
func serverHang(t *testing.T, ex string, forks int) {
	t.Helper()
	serverHangIn(t, ex, "", forks)
}

// serverHangIn is serverHang with more attributes for the lane.
func serverHangIn(t *testing.T, ex, attrs string, forks int) {
	t.Helper()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers     = 1
  max_workers     = 1
  exec            = %s
  request_timeout = "2s"
  stop_timeout    = "5s"
  %s
}
`, ex, attrs))
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

// testdata returns the absolute path of a file under testdata.
func testdata(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// lookPath returns the path of a program, skipping the test without it.
func lookPath(t *testing.T, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		t.Skipf("%s is not installed (make test-deps installs Debian's %s)", prog, pkg)
	}
	return p
}

// TestExecNodeHang: node on fd 3 (server.listen({fd: 3})); a handler that
// spins its one event loop wedges it.
func TestExecNodeHang(t *testing.T) {
	t.Parallel()
	serverHang(t, fmt.Sprintf(`[%q, %q]`, lookPath(t, "node", "nodejs"), testdata(t, "server.js")), 0)
}

// TestExecPHPHang: PHP's built-in server, which can only bind a port:
// exec_socket = "port" through a shell that passes $PORT.
func TestExecPHPHang(t *testing.T) {
	t.Parallel()
	php := lookPath(t, "php", "php-cli")
	serverHangIn(t, fmt.Sprintf(`["sh", "-c", "exec %s -S 127.0.0.1:$PORT -t %s"]`, php, testdata(t, "php")), `exec_socket = "port"`, 0)
}

// TestExecPumaHang: puma in single mode takes the inherited socket that
// matches its bind.
func TestExecPumaHang(t *testing.T) {
	t.Parallel()
	puma := lookPath(t, "puma", "puma")
	serverHangIn(t, fmt.Sprintf(`["sh", "-c", "exec %s -w 0 -t 1:1 -b unix://$LANES_SOCKET %s"]`, puma, testdata(t, "config.ru")), "", 0)
}

// TestExecDirAndEnv: exec_dir is the program's working directory (a
// relative "app.py" runs only from there) and exec_env reaches it; a
// reload that changes exec_env rolls the lane onto workers that have the
// new value.
func TestExecDirAndEnv(t *testing.T) {
	t.Parallel()
	py := python(t)
	lane := func(greeting string) string {
		return fmt.Sprintf(`
lane "default" {
  min_workers = 1
  max_workers = 1
  exec        = [%q, "app.py"]
  exec_dir    = %q
  exec_env    = { APP_GREETING = %q, APP_MODE = "test" }
}
`, py, filepath.Dir(wsgiApp(t)), greeting)
	}
	l := startLanesd(t, lane("hello"))
	old := l.readyPIDs(t, "default", 1, 20*time.Second)
	env := l.appEnv(t)
	if env["APP_GREETING"] != "hello" || env["APP_MODE"] != "test" {
		t.Fatalf("the app's environment has APP_GREETING=%q APP_MODE=%q; want hello and test", env["APP_GREETING"], env["APP_MODE"])
	}
	l.writeConfig(t, lane("bonjour"))
	l.signal(t, syscall.SIGHUP)
	l.waitReplaced(t, "default", old, 1)
	waitFor(t, "a worker with the new exec_env", 20*time.Second, func() bool {
		return l.appEnv(t)["APP_GREETING"] == "bonjour"
	})
}

// TestExecKeepAliveClosedAsSent: an app that closes a kept-alive
// connection as the next request arrives on it, answering nothing (the
// race every keep-alive client has with a server closing idle
// connections), costs neither the request nor the worker: a GET goes out
// again on a fresh connection, and the worker stays. Before, each such
// close was a "broken response", and the worker was killed and replaced.
func TestExecKeepAliveClosedAsSent(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers = 1
  max_workers = 1
  exec        = [%q, %q]
}
`, python(t), testdata(t, "oneshot_keepalive.py")))
	first := l.readyPIDs(t, "default", 1, 20*time.Second)
	waitFor(t, "the app to answer", 20*time.Second, func() bool {
		r := l.get("/pid")
		return r.err == nil && r.status == http.StatusOK
	})
	for i := range 20 {
		if r := l.get("/pid"); r.err != nil || r.status != http.StatusOK || string(r.body) != fmt.Sprint(first[0]) {
			t.Fatalf("GET /pid #%d: %s; want 200 from %d", i, r, first[0])
		}
	}
	if pids := l.lane(t, "default").PIDs(); len(pids) != 1 || pids[0] != first[0] {
		t.Errorf("workers %v after 20 requests on closing connections; want %v, never replaced", pids, first)
	}
	if n := strings.Count(l.Log.String(), "broke a response"); n != 0 {
		t.Errorf("%d broken-response kills logged", n)
	}
}
