package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Helpers for the exec lanes' tests (exec_test.go): the Python example app
// (examples/wsgi/app.py) as the workers of a lane, under the python3 on
// PATH or under Debian's gunicorn.

var (
	pythonOnce sync.Once
	pythonPath string // the interpreter python3 on PATH runs, or ""
	pythonErr  string
)

// python returns the interpreter that python3 on PATH runs (resolved, so
// that a pyenv shim's start-up is not paid by every worker), skipping the
// test when there is none.
func python(t *testing.T) string {
	t.Helper()
	pythonOnce.Do(func() {
		out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").CombinedOutput()
		if err != nil {
			pythonErr = fmt.Sprintf("python3: %v: %s", err, out)
			return
		}
		pythonPath = strings.TrimSpace(string(out))
	})
	if pythonPath == "" {
		t.Skipf("no python3 for the exec lanes' tests (%s)", pythonErr)
	}
	return pythonPath
}

// wsgiApp returns the absolute path of the example app.
func wsgiApp(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../examples/wsgi/app.py")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// stdlibExec is the exec attribute of a lane running the example app alone.
func stdlibExec(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("[%q, %q]", python(t), wsgiApp(t))
}

const debianPython = "/usr/bin/python3"

var (
	gunicornOnce sync.Once
	gunicornErr  string
)

// gunicornExec is the exec attribute of a lane running the example app
// under Debian's gunicorn with n forked workers, no --bind: gunicorn finds
// the socket by LISTEN_FDS. It skips the test without gunicorn.
func gunicornExec(t *testing.T, n int) string {
	t.Helper()
	if !haveGunicorn() {
		t.Skipf("gunicorn is not installed for %s (make test-deps installs Debian's python3-gunicorn): %s", debianPython, gunicornErr)
	}
	return fmt.Sprintf("[%q, \"-m\", \"gunicorn\", \"--workers\", \"%d\", \"--chdir\", %q, \"app:app\"]",
		debianPython, n, filepath.Dir(wsgiApp(t)))
}

// haveGunicorn reports whether Debian's python3-gunicorn is installed.
func haveGunicorn() bool {
	gunicornOnce.Do(func() {
		out, err := exec.Command(debianPython, "-c", "import gunicorn").CombinedOutput()
		if err != nil {
			gunicornErr = fmt.Sprintf("%s -c 'import gunicorn': %v: %s", debianPython, err, bytes.TrimSpace(out))
		}
	})
	return gunicornErr == ""
}

// procPgid returns pid's process group from /proc/PID/stat, or 0.
func procPgid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:])) // state ppid pgrp ...
	if len(f) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(f[2])
	return n
}

// ppid returns pid's parent, or 0.
func ppid(pid int) int {
	_, pp, _ := procStat(pid)
	return pp
}

// exe returns the program pid runs, or "".
func exe(pid int) string {
	p, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return p
}

// getInt GETs path and returns the integer it answers.
func (l *lanesd) getInt(t *testing.T, path string) int {
	t.Helper()
	r := l.mustGet(t, path, 200)
	n, err := strconv.Atoi(strings.TrimSpace(string(r.body)))
	if err != nil {
		t.Fatalf("GET %s: %q is not a number", path, r.body)
	}
	return n
}

// appEnv GETs /env and returns the environment the app reports.
func (l *lanesd) appEnv(t *testing.T) map[string]string {
	t.Helper()
	r := l.mustGet(t, "/env", 200)
	var env map[string]string
	if err := json.Unmarshal(r.body, &env); err != nil {
		t.Fatalf("GET /env: %v: %q", err, r.body)
	}
	return env
}

// waitGone waits until none of pids is alive.
func waitGone(t *testing.T, what string, pids []int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, p := range pids {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range left {
				st, pp, _ := procStat(p)
				t.Errorf("%s: process %d (%s, state %c, parent %d) still alive %v later", what, p, exe(p), st, pp, timeout)
			}
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// readyPIDs waits until lane has n ready workers and returns their pids.
func (l *lanesd) readyPIDs(t *testing.T, lane string, n int, timeout time.Duration) []int {
	t.Helper()
	var pids []int
	waitFor(t, fmt.Sprintf("%d ready workers in lane %s", n, lane), timeout, func() bool {
		st, err := l.tryStatus()
		if err != nil {
			return false
		}
		pids = laneOf(t, st, lane).PIDs("ready")
		return len(pids) == n
	})
	return pids
}

// sigIgnored returns which of the signals a supervisor handles pid
// ignores, from SigIgn in /proc/PID/status.
func sigIgnored(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	var mask uint64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	var out []string
	for _, s := range []struct {
		sig  syscall.Signal
		name string
	}{
		{syscall.SIGHUP, "SIGHUP"}, {syscall.SIGINT, "SIGINT"}, {syscall.SIGQUIT, "SIGQUIT"}, {syscall.SIGTERM, "SIGTERM"},
		{syscall.SIGUSR1, "SIGUSR1"}, {syscall.SIGUSR2, "SIGUSR2"}, {syscall.SIGTTIN, "SIGTTIN"}, {syscall.SIGTTOU, "SIGTTOU"},
	} {
		if mask&(1<<(uint(s.sig)-1)) != 0 {
			out = append(out, s.name)
		}
	}
	return out
}
