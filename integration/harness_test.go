// Package integration runs lanesd as a real process — its workers, sockets
// and signals included — and checks what a user of it would notice. The
// binaries are built once by TestMain; every test starts its own lanesd on
// ephemeral ports with its own TMPDIR, so tests can run in parallel.
package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

// logBuffer collects a process's stderr and wakes readers on every write.
type logBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func newLogBuffer() *logBuffer { return &logBuffer{wrote: make(chan struct{}, 1)} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lanesd is one running supervisor process.
type lanesd struct {
	t      *testing.T
	cmd    *exec.Cmd
	pid    int
	front  string // host:port of the front listener
	admin  string // host:port of the admin listener
	dir    string // where the config file is
	tmp    string // the process's TMPDIR (its run directory lives here)
	log    *logBuffer
	done   chan struct{} // closed once the process has been reaped
	err    error         // cmd.Wait's result; read after done
	client *http.Client
}

var listeningRE = regexp.MustCompile(`lanesd: listening: front=(\S+) admin=(\S+)`)

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
// listens. The harness adds listen = "127.0.0.1:0", an admin block on
// 127.0.0.1:0 (unless hcl has one) and shutdown_timeout = "5s" (unless hcl
// sets it).
func startLanesd(t *testing.T, hcl string) *lanesd {
	t.Helper()
	return startLanesdIn(t, t.TempDir(), newTmp(t), hcl)
}

// startLanesdIn is startLanesd with the config written into dir (for files
// the config names relative to itself) and tmp as the process's TMPDIR.
func startLanesdIn(t *testing.T, dir, tmp, hcl string) *lanesd {
	t.Helper()
	l, err := launch(t, dir, tmp, hcl)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func fullConfig(hcl string) string {
	var b strings.Builder
	b.WriteString("listen = \"127.0.0.1:0\"\n")
	if !strings.Contains(hcl, "shutdown_timeout") {
		b.WriteString("shutdown_timeout = \"5s\"\n")
	}
	if !regexp.MustCompile(`(?m)^\s*admin\s*\{`).MatchString(hcl) {
		b.WriteString("admin {\n  listen = \"127.0.0.1:0\"\n}\n")
	}
	b.WriteString(hcl)
	return b.String()
}

func launch(t *testing.T, dir, tmp, hcl string) (*lanesd, error) {
	t.Helper()
	return launchCmd(t, dir, tmp, hcl, func(path string) *exec.Cmd {
		cmd := exec.Command(lanesdBin, "-config", path)
		// A process group of its own, as a shell gives a job: a test can
		// send a signal to the whole group, as a terminal's Ctrl-C does.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd
	})
}

// launchCmd writes hcl to dir and runs the command that command returns for
// the config's path, as lanesd, until lanesd logs that it listens.
func launchCmd(t *testing.T, dir, tmp, hcl string, command func(path string) *exec.Cmd) (*lanesd, error) {
	t.Helper()
	path := filepath.Join(dir, "lanes.hcl")
	if err := os.WriteFile(path, []byte(fullConfig(hcl)), 0o600); err != nil {
		return nil, err
	}
	l := &lanesd{t: t, dir: dir, tmp: tmp, log: newLogBuffer(), done: make(chan struct{})}
	l.cmd = command(path)
	l.cmd.Dir = dir
	l.cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	l.cmd.Stdout = l.log
	l.cmd.Stderr = l.log
	l.cmd.WaitDelay = 5 * time.Second
	if err := l.cmd.Start(); err != nil {
		return nil, err
	}
	l.pid = l.cmd.Process.Pid
	go func() {
		l.err = l.cmd.Wait()
		close(l.done)
	}()
	t.Cleanup(l.cleanup)

	deadline := time.After(60 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(l.log.String()); m != nil {
			l.front, l.admin = m[1], m[2]
			break
		}
		select {
		case <-l.log.wrote:
		case <-l.done:
			return nil, fmt.Errorf("lanesd exited before listening (%v); its log:\n%s", l.err, l.log)
		case <-deadline:
			return nil, fmt.Errorf("lanesd did not log its listening line within 60s; its log:\n%s", l.log)
		}
	}
	l.client = newClient(30 * time.Second)
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
	kids := descendants(l.pid)
	if l.running() {
		_ = l.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-l.done:
		case <-time.After(10 * time.Second):
			t.Errorf("lanesd %d did not stop within 10s of SIGTERM; killing it", l.pid)
			_ = l.cmd.Process.Kill()
			<-l.done
		}
	}
	if l.client != nil {
		l.client.CloseIdleConnections()
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range kids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("process %d, started by lanesd %d, outlived it; killing it", pid, l.pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if t.Failed() {
		t.Logf("lanesd %d log:\n%s", l.pid, l.log)
	}
}

func (l *lanesd) running() bool {
	select {
	case <-l.done:
		return false
	default:
		return true
	}
}

func (l *lanesd) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := l.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to lanesd: %v", sig, err)
	}
}

// wait waits for lanesd to exit and returns its exit code.
func (l *lanesd) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(timeout):
		t.Fatalf("lanesd %d still running %v later", l.pid, timeout)
	}
	return l.cmd.ProcessState.ExitCode()
}

func (l *lanesd) url(path string) string { return "http://" + l.front + path }

// --- admin status ---

type statusDoc struct {
	PID   int          `json:"pid"`
	Lanes []laneStatus `json:"lanes"`
}

type laneStatus struct {
	Name       string         `json:"name"`
	MinWorkers int            `json:"min_workers"`
	MaxWorkers int            `json:"max_workers"`
	Workers    []workerStatus `json:"workers"`
	Queued     int            `json:"queued"`
	Inflight   int            `json:"inflight"`
	Served     uint64         `json:"served"`
	Rejected   uint64         `json:"rejected"`
	Timeouts   uint64         `json:"timeouts"`
	Killed     uint64         `json:"killed"`
	Respawns   uint64         `json:"respawns"`
	Latency    struct {
		Count int     `json:"count"`
		P50   float64 `json:"p50"`
		P90   float64 `json:"p90"`
		P99   float64 `json:"p99"`
		Max   float64 `json:"max"`
	} `json:"latency_ms"`
	CrashLoop bool   `json:"crash_loop"`
	Crashes   int    `json:"consecutive_crashes"`
	BackoffMS int64  `json:"backoff_ms"`
	LastExit  string `json:"last_exit"`
}

type workerStatus struct {
	PID      int     `json:"pid"`
	State    string  `json:"state"`
	Inflight int     `json:"inflight"`
	Served   uint64  `json:"served"`
	RSS      int64   `json:"rss"`
	Uptime   float64 `json:"uptime_s"`
}

// tryStatus fetches /api/status with the bearer token tok (may be empty).
func (l *lanesd) tryStatus(tok string) (*statusDoc, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+l.admin+"/api/status", nil)
	if err != nil {
		return nil, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/status: %s: %s", resp.Status, body)
	}
	var st statusDoc
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("GET /api/status: %w: %s", err, body)
	}
	return &st, nil
}

func (l *lanesd) status(t *testing.T) *statusDoc {
	t.Helper()
	st, err := l.tryStatus("")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// lane returns the named lane's status.
func (l *lanesd) lane(t *testing.T, name string) laneStatus {
	t.Helper()
	return l.status(t).lane(t, name)
}

func (s *statusDoc) lane(t *testing.T, name string) laneStatus {
	t.Helper()
	for _, ls := range s.Lanes {
		if ls.Name == name {
			return ls
		}
	}
	t.Fatalf("no lane %q in status", name)
	return laneStatus{}
}

// pids returns the pids of the lane's workers in the given states (all
// workers when no state is given).
func (ls laneStatus) pids(states ...string) []int {
	var out []int
	for _, w := range ls.Workers {
		if len(states) == 0 || contains(states, w.State) {
			out = append(out, w.PID)
		}
	}
	return out
}

// workerPIDs returns the pids of lane's ready workers.
func (l *lanesd) workerPIDs(t *testing.T, lane string) []int {
	t.Helper()
	return l.lane(t, lane).pids("ready")
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
func (l *lanesd) get(path string) result { return do(l.client, http.MethodGet, l.url(path), nil, nil) }

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
