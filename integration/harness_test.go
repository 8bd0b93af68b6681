// Package integration runs lanesd as a real process — its workers, sockets
// and signals included — and checks what a user of it would notice. The
// binaries are built once by TestMain; every test starts its own lanesd on
// ephemeral ports with its own TMPDIR, so tests can run in parallel.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/internal/lanestest"
	"github.com/lanes-dev/lanes/shared/api"
)

// Paths of the binaries TestMain builds.
var (
	lanesdBin  string
	lanectlBin string
	helloBin   string // internal/testworker: a custom Go worker serving /hello/*
	// scratch holds the binaries and every lanesd's TMPDIR; kept short
	// because worker sockets live below it (sun_path is 108 bytes).
	scratch string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lanesit-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(1)
	}
	scratch = dir
	lanesdBin = filepath.Join(dir, "lanesd")
	lanectlBin = filepath.Join(dir, "lanectl")
	helloBin = filepath.Join(dir, "hello-worker")
	for _, b := range []struct{ out, pkg string }{
		{lanesdBin, "github.com/lanes-dev/lanes/cmd/lanesd"},
		{lanectlBin, "github.com/lanes-dev/lanes/cmd/lanectl"},
		{helloBin, "github.com/lanes-dev/lanes/internal/testworker"},
	} {
		out, err := exec.Command("go", "build", "-o", b.out, b.pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "integration: go build %s: %v\n%s", b.pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lanesd is one running supervisor process, with the test it belongs to.
type lanesd struct {
	*lanestest.Lanesd
	t      *testing.T
	tmp    string // the process's TMPDIR (its run directory lives here)
	client *http.Client
}

// newTmp returns a fresh short directory for a lanesd's TMPDIR.
func newTmp(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp(scratch, "t")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// startLanesd runs lanesd with hcl as its config and waits until it
// listens and its admin API answers. The harness adds listen =
// "127.0.0.1:0", an admin block on 127.0.0.1:0 (unless hcl has one) and
// shutdown_timeout = "5s" (unless hcl sets it).
func startLanesd(t *testing.T, hcl string) *lanesd {
	t.Helper()
	return startLanesdIn(t, t.TempDir(), newTmp(t), hcl)
}

// startLanesdIn is startLanesd with the config written into dir (for files
// the config names relative to itself) and tmp as the process's TMPDIR.
func startLanesdIn(t *testing.T, dir, tmp, hcl string) *lanesd {
	t.Helper()
	l, err := launchCmd(t, dir, tmp, hcl, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func fullConfig(hcl string) string {
	if !strings.Contains(hcl, "shutdown_timeout") {
		hcl = "shutdown_timeout = \"5s\"\n" + hcl
	}
	return lanestest.Ephemeral(hcl)
}

// launchCmd writes hcl to dir and runs lanesd on it, through the command
// that command returns for the config's path when command is not nil,
// until it is ready.
func launchCmd(t *testing.T, dir, tmp, hcl string, command func(path string) *exec.Cmd) (*lanesd, error) {
	t.Helper()
	client := newClient(30 * time.Second)
	ll, err := lanestest.Launch(lanestest.Options{
		Bin:     lanesdBin,
		Dir:     dir,
		Env:     []string{"TMPDIR=" + tmp},
		Command: command,
		HTTP:    client,
		Proc:    lanestest.ProcOptions{Signal: syscall.SIGTERM, Grace: 10 * time.Second},
	}, fullConfig(hcl))
	if err != nil {
		return nil, err
	}
	l := &lanesd{Lanesd: ll, t: t, tmp: tmp, client: client}
	t.Cleanup(l.cleanup)
	if err := ll.WaitReady(); err != nil {
		return nil, err
	}
	return l, nil
}

func newClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// cleanup stops lanesd (SIGTERM, then SIGKILL after 10s), checks that no
// process it started outlives it, and prints its log if the test failed.
func (l *lanesd) cleanup() {
	t := l.t
	kids := descendants(l.PID)
	if l.Running() && l.Stop() {
		t.Errorf("lanesd %d did not stop within 10s of SIGTERM; killed it", l.PID)
	}
	l.client.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range kids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("process %d, started by lanesd %d, outlived it; killing it", pid, l.PID)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if t.Failed() {
		t.Logf("lanesd %d log:\n%s", l.PID, l.Log)
	}
}

func (l *lanesd) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := l.Signal(sig); err != nil {
		t.Fatalf("signal %v to lanesd: %v", sig, err)
	}
}

// wait waits for lanesd to exit and returns its exit code.
func (l *lanesd) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	code, err := l.Wait(timeout)
	if err != nil {
		t.Fatalf("lanesd %d still running %v later", l.PID, timeout)
	}
	return code
}

// --- admin status ---

// tryStatus is GET /api/status.
func (l *lanesd) tryStatus() (*api.Status, error) { return l.API.Status(context.Background()) }

func (l *lanesd) status(t *testing.T) *api.Status {
	t.Helper()
	st, err := l.tryStatus()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// lane returns the named lane's status.
func (l *lanesd) lane(t *testing.T, name string) *api.Lane {
	t.Helper()
	return laneOf(t, l.status(t), name)
}

// laneOf returns the named lane of st, failing the test if it has none.
func laneOf(t *testing.T, st *api.Status, name string) *api.Lane {
	t.Helper()
	ls := st.Lane(name)
	if ls == nil {
		t.Fatalf("no lane %q in status", name)
	}
	return ls
}

// workerPIDs returns the pids of lane's ready workers.
func (l *lanesd) workerPIDs(t *testing.T, lane string) []int {
	t.Helper()
	return l.lane(t, lane).PIDs("ready")
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// --- processes ---

// procStat returns the state letter and parent pid of pid from
// /proc/PID/stat; ok is false when there is no such process.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "PID (COMM) STATE PPID ..."; COMM may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0][0], ppid, true
}

// alive reports whether pid is a live process. A zombie counts as gone: it
// has exited, and an orphan's zombie may wait long for a reaper when PID 1
// is not an init.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	st, _, ok := procStat(pid)
	return ok && st != 'Z' && st != 'X'
}

// descendants returns every live process below pid, found through the ppid
// field of /proc/*/stat.
func descendants(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, pp, ok := procStat(p); ok && st != 'Z' && st != 'X' {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// procKB returns a /proc/PID/status field in kB, such as "VmRSS" or "VmHWM".
func procKB(pid int, field string) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// --- waiting ---

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// --- HTTP ---

// result is one HTTP exchange, for requests made off the test goroutine.
type result struct {
	status int
	header http.Header
	body   []byte
	err    error
	took   time.Duration
}

func (r result) String() string {
	if r.err != nil {
		return fmt.Sprintf("error after %v: %v", r.took.Round(time.Millisecond), r.err)
	}
	b := r.body
	if len(b) > 200 {
		b = b[:200]
	}
	return fmt.Sprintf("%d after %v: %q", r.status, r.took.Round(time.Millisecond), b)
}

// do makes one request and reads the whole answer. It does not touch t and
// may run on any goroutine.
func do(c *http.Client, method, url string, body []byte, hdr http.Header) result {
	start := time.Now()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return result{err: err}
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		return result{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b, err: err, took: time.Since(start)}
}

// get is do(GET) on the front listener.
func (l *lanesd) get(path string) result { return do(l.client, http.MethodGet, l.URL(path), nil, nil) }

// mustGet GETs path from the front and fails the test unless the answer
// has the wanted status.
func (l *lanesd) mustGet(t *testing.T, path string, want int) result {
	t.Helper()
	r := l.get(path)
	if r.err != nil || r.status != want {
		t.Fatalf("GET %s: want %d, got %s", path, want, r)
	}
	return r
}

// rawRequest writes raw to a new connection to addr and returns what comes
// back until the server closes the connection or timeout passes.
func rawRequest(addr, raw string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, raw); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// readResponse sends raw on a new connection and parses the first response.
func readResponse(addr, raw string, timeout time.Duration) (*http.Response, []byte, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, raw); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}
