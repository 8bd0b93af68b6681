//go:build linux

package proc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/logging"
)

// ExecStartTimeout bounds an exec worker's start: fork to ready (its
// health path answering, or READY=1). Interpreted apps import a lot.
const ExecStartTimeout = 30 * time.Second

// ExecSpec is what it takes to start an exec worker: a process of any
// program that serves HTTP/1.1 on the socket lanesd hands it.
type ExecSpec struct {
	Shim    []string // argv of lanesd's shim subcommand
	Command []string // the program (absolute path) and its arguments
	Dir     string   // its working directory
	Env     []string // its environment (lanesd adds the socket's variables)
	// Port: a free loopback port in PORT instead of a unix socket on fd 3.
	Port        bool
	HealthPath  string // "" : no HTTP health check
	Notify      bool   // ready once READY=1 arrives on NOTIFY_SOCKET
	StopSignal  syscall.Signal
	StopTimeout time.Duration
	RunDir      string
	Name        string
	Log         hclog.Logger
	Spawner     *Spawner
}

// ExecProcess is one exec worker: the shim (ShimMain) and, under it, the
// program in a process group of its own. PID is the program's. Its
// methods are safe for concurrent use; Kill may be called at any time.
type ExecProcess struct {
	spec    ExecSpec
	socket  string // fd mode: the unix socket's path
	network string
	addr    string
	notify  string // NOTIFY_SOCKET's path, when Notify
	health  *fasthttp.HostClient

	mu       sync.Mutex
	shim     *os.Process
	ctl      *os.File
	pid      int // the program's, once the shim said
	status   syscall.WaitStatus
	reported bool // the shim reported the program's end
	killed   bool
	ready    time.Time
	note     string // the last STATUS= it sent

	readyCh  chan struct{} // closed on READY=1
	readyOne sync.Once
	exited   chan struct{}
	exitOnce sync.Once
	exitErr  error // the shim's own end, when it reported nothing
}

// NewExec returns an exec worker that Start will launch.
func NewExec(spec ExecSpec) *ExecProcess {
	if spec.Log == nil {
		spec.Log = hclog.NewNullLogger()
	}
	if spec.StopSignal == 0 {
		spec.StopSignal = syscall.SIGTERM
	}
	return &ExecProcess{spec: spec, readyCh: make(chan struct{}), exited: make(chan struct{})}
}

// Socket is the unix socket the program serves on ("" in port mode).
func (p *ExecProcess) Socket() string { return p.socket }

// DataAddr is where the front sends requests: the unix socket, or
// 127.0.0.1:PORT.
func (p *ExecProcess) DataAddr() (network, addr string) { return p.network, p.addr }

// Start creates the socket, starts the shim and the program under it,
// and waits until the program is ready: its health path answers below
// 500, or it sent READY=1, or (neither asked for) at once in fd mode —
// requests wait in the socket's backlog — and once it accepts in port
// mode. On error nothing is left running.
func (p *ExecProcess) Start(ctx context.Context) error {
	s := p.spec
	env := append([]string(nil), s.Env...)
	var files []*os.File // the shim's fds 3 and up
	closeAfter := []io.Closer{}
	defer func() {
		for _, c := range closeAfter {
			c.Close()
		}
	}()

	ours, theirs, err := socketPair()
	if err != nil {
		return p.fail(fmt.Errorf("control socket: %w", err))
	}
	closeAfter = append(closeAfter, theirs)
	files = append(files, theirs)

	if s.Port {
		port, err := freePort()
		if err != nil {
			ours.Close()
			return p.fail(err)
		}
		p.network, p.addr = "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		env = append(env, "PORT="+strconv.Itoa(port))
	} else {
		p.socket = filepath.Join(s.RunDir, s.Name+".sock")
		_ = os.Remove(p.socket)
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p.socket, Net: "unix"})
		if err != nil {
			ours.Close()
			return p.fail(fmt.Errorf("listen %s: %w", p.socket, err))
		}
		ln.SetUnlinkOnClose(false) // the program serves on it; Kill removes it
		lf, err := ln.File()
		ln.Close()
		if err != nil {
			ours.Close()
			return p.fail(fmt.Errorf("listen %s: %w", p.socket, err))
		}
		closeAfter = append(closeAfter, lf)
		files = append(files, lf)
		p.network, p.addr = "unix", p.socket
		env = append(env, "LISTEN_FDS=1", "LISTEN_FDNAMES=lanes", shared.EnvSocket+"="+p.socket)
	}
	if s.Notify {
		p.notify = filepath.Join(s.RunDir, s.Name+".notify")
		_ = os.Remove(p.notify)
		nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p.notify, Net: "unixgram"})
		if err != nil {
			ours.Close()
			return p.fail(fmt.Errorf("notify socket: %w", err))
		}
		go p.readNotify(nc)
		env = append(env, "NOTIFY_SOCKET="+p.notify)
	}
	p.health = &fasthttp.HostClient{
		Addr:                      p.addr,
		Dial:                      func(string) (net.Conn, error) { return net.DialTimeout(p.network, p.addr, HealthTimeout) },
		MaxConns:                  1,
		MaxConnWaitTimeout:        HealthTimeout, // two checks at once wait, not fail
		MaxIdemponentCallAttempts: 1,
		MaxIdleConnDuration:       time.Second,
		NoDefaultUserAgentHeader:  true,
	}

	outR, outW, err := os.Pipe()
	if err != nil {
		ours.Close()
		return p.fail(err)
	}
	closeAfter = append(closeAfter, outW)
	cmd := exec.Command(s.Shim[0], append(append(s.Shim[1:len(s.Shim):len(s.Shim)], "-rundir", s.RunDir, "--"), s.Command...)...)
	cmd.Env, cmd.Dir = env, s.Dir
	cmd.Stdout, cmd.Stderr = outW, outW
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: shimParentSignal}
	err = s.Spawner.Start(cmd)
	// The child's ends are the child's now: held here, they would hide its
	// death from the control socket's reader until Start returns.
	for _, c := range closeAfter {
		c.Close()
	}
	closeAfter = nil
	if err != nil {
		ours.Close()
		outR.Close()
		return p.fail(fmt.Errorf("start %s: %w", s.Command[0], err))
	}
	go p.logOutput(outR)
	p.mu.Lock()
	p.shim, p.ctl = cmd.Process, ours
	killed := p.killed
	p.mu.Unlock()

	pidCh := make(chan int, 1)
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		p.readControl(bufio.NewReader(ours), pidCh)
	}()
	go func() {
		err := cmd.Wait()
		// The shim's last line (the program's end) is read before Exited
		// closes; its end of the socket closed with it.
		select {
		case <-ctlDone:
		case <-time.After(time.Second):
		}
		ours.Close()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		p.exitOnce.Do(func() { close(p.exited) })
		p.cleanup()
	}()
	if killed {
		p.Kill()
	}

	deadline := time.NewTimer(ExecStartTimeout)
	defer deadline.Stop()
	select {
	case <-pidCh:
	case <-p.exited:
		return fmt.Errorf("%s exited while starting: %s", s.Command[0], p.ExitErr())
	case <-deadline.C:
		p.Kill()
		return fmt.Errorf("%s: no process within %s", s.Command[0], ExecStartTimeout)
	case <-ctx.Done():
		p.Kill()
		return ctx.Err()
	}
	if err := p.waitReady(ctx, deadline.C); err != nil {
		p.Kill()
		return err
	}
	p.mu.Lock()
	p.ready = time.Now()
	killed = p.killed
	p.mu.Unlock()
	if killed {
		return errors.New("killed while starting")
	}
	return nil
}

// fail ends a Start that forked nothing.
func (p *ExecProcess) fail(err error) error {
	p.exitOnce.Do(func() {
		p.exitErr = err
		close(p.exited)
	})
	p.cleanup()
	return err
}

// waitReady waits for the readiness the spec asks for.
func (p *ExecProcess) waitReady(ctx context.Context, deadline <-chan time.Time) error {
	s := p.spec
	what := ""
	var ready func() bool
	switch {
	case s.Notify:
		what = "READY=1 on NOTIFY_SOCKET"
		ready = func() bool {
			select {
			case <-p.readyCh:
				return true
			default:
				return false
			}
		}
	case s.HealthPath != "":
		what = "GET " + s.HealthPath + " below 500"
		ready = func() bool { return p.checkHealth(ctx) == nil }
	case s.Port:
		// Listening, read from /proc rather than tried with a connection
		// that the program would log as a request that never came.
		what = "listening on " + p.addr
		_, port, _ := net.SplitHostPort(p.addr)
		n, _ := strconv.Atoi(port)
		ready = func() bool { return listening(n) }
	default:
		return nil // requests wait in the socket's backlog
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !ready() {
		select {
		case <-tick.C:
		case <-p.readyCh:
		case <-p.exited:
			return fmt.Errorf("%s exited before %s: %s", s.Command[0], what, p.ExitErr())
		case <-deadline:
			return fmt.Errorf("%s: no %s within %s", s.Command[0], what, ExecStartTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// readControl reads the shim's lines: the program's pid, then its end.
func (p *ExecProcess) readControl(r *bufio.Reader, pidCh chan<- int) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil {
			continue
		}
		p.mu.Lock()
		switch f[0] {
		case "pid":
			p.pid = int(n)
			pidCh <- int(n)
		case "exit":
			p.status, p.reported = syscall.WaitStatus(uint32(n)), true
		}
		p.mu.Unlock()
	}
}

// readNotify reads sd_notify datagrams until the process is gone.
func (p *ExecProcess) readNotify(nc *net.UnixConn) {
	go func() { <-p.exited; nc.Close() }()
	buf := make([]byte, 4096)
	for {
		n, err := nc.Read(buf)
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			switch {
			case line == "READY=1":
				p.readyOne.Do(func() { close(p.readyCh) })
			case strings.HasPrefix(line, "STATUS="):
				p.mu.Lock()
				p.note = logging.Escape(strings.TrimPrefix(line, "STATUS="), 200)
				p.mu.Unlock()
			}
		}
	}
}

// outputRate is how many lines of a program's output per second reach
// lanesd's log; the rest are counted and reported once a second.
const (
	outputRate    = 100
	outputLineMax = 4 << 10
)

// logOutput folds the program's stdout and stderr lines into lanesd's log
// under the worker's name: escaped (binary junk stays on one line), cut
// to outputLineMax, at most outputRate a second.
func (p *ExecProcess) logOutput(r io.ReadCloser) {
	defer r.Close()
	log := p.spec.Log.With("worker", p.spec.Name)
	br := bufio.NewReaderSize(r, outputLineMax)
	window, n, dropped := time.Now(), 0, 0
	for {
		line, err := br.ReadSlice('\n')
		long := errors.Is(err, bufio.ErrBufferFull)
		if len(line) > 0 {
			if now := time.Now(); now.Sub(window) >= time.Second {
				if dropped > 0 {
					log.Warn("program output suppressed", "lines", dropped, "pid", p.PID())
				}
				window, n, dropped = now, 0, 0
			}
			if n++; n <= outputRate {
				text := printable(bytes.TrimRight(line, "\r\n"))
				if long {
					text += "..."
				}
				log.Info(text, "pid", p.PID())
			} else {
				dropped++
			}
		}
		if long {
			// Skip the rest of an endless line.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
		}
		if err != nil && !long {
			if dropped > 0 {
				log.Warn("program output suppressed", "lines", dropped)
			}
			return
		}
	}
}

// printable returns b with control characters and bytes that are not
// UTF-8 escaped as in a Go string, so a program's binary junk cannot write
// lines of its own or garble the log; everything else is kept as written.
func printable(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&sb, `\x%02x`, b[0])
		case r == '\t':
			sb.WriteByte('\t')
		case unicode.IsControl(r):
			q := strconv.QuoteRune(r)
			sb.WriteString(q[1 : len(q)-1])
		default:
			sb.Write(b[:n])
		}
		b = b[n:]
	}
	return sb.String()
}

// PID returns the program's pid (gunicorn's arbiter, say), or 0 before it
// started.
func (p *ExecProcess) PID() int { p.mu.Lock(); defer p.mu.Unlock(); return p.pid }

// Note returns the last STATUS= line the program sent with sd_notify.
func (p *ExecProcess) Note() string { p.mu.Lock(); defer p.mu.Unlock(); return p.note }

// Exited is closed once the shim has been reaped (the program and its
// group are gone by then).
func (p *ExecProcess) Exited() <-chan struct{} { return p.exited }

// ExitErr describes how the program ended; valid once Exited is closed.
func (p *ExecProcess) ExitErr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reported {
		ws := p.status
		switch {
		case ws.Signaled():
			return "signal: " + shared.SignalName(ws.Signal())
		case ws.Exited():
			return "exit status " + strconv.Itoa(ws.ExitStatus())
		}
	}
	if p.exitErr == nil {
		return "exit status 0"
	}
	return p.exitErr.Error()
}

// Signaled returns the signal that ended the program, if one did.
func (p *ExecProcess) Signaled() (syscall.Signal, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reported && p.status.Signaled() {
		return p.status.Signal(), true
	}
	return 0, false
}

// Health GETs the health path (if any) over the data socket, bounded by
// HealthTimeout; without one, a program that is still running is healthy.
func (p *ExecProcess) Health(ctx context.Context) (shared.WorkerStats, error) {
	select {
	case <-p.exited:
		return shared.WorkerStats{}, errors.New("exited: " + p.ExitErr())
	default:
	}
	if p.spec.HealthPath != "" {
		if err := p.checkHealth(ctx); err != nil {
			return shared.WorkerStats{}, err
		}
	}
	return shared.WorkerStats{PID: p.PID(), RSS: p.RSS()}, nil
}

func (p *ExecProcess) checkHealth(ctx context.Context) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(p.spec.HealthPath)
	req.Header.SetHost("lanes")
	req.Header.Set("User-Agent", "lanes-health")
	deadline := time.Now().Add(HealthTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := p.health.DoDeadline(req, resp, deadline); err != nil {
		return fmt.Errorf("GET %s: %w", p.spec.HealthPath, err)
	}
	if code := resp.StatusCode(); code >= 500 {
		return fmt.Errorf("GET %s: %d", p.spec.HealthPath, code)
	}
	return nil
}

// tell sends the shim one line; false if it is gone.
func (p *ExecProcess) tell(line string) bool {
	p.mu.Lock()
	ctl := p.ctl
	p.mu.Unlock()
	if ctl == nil {
		return false
	}
	_ = ctl.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := io.WriteString(ctl, line+"\n")
	return err == nil
}

// Signal sends sig to the program's whole process group, through the shim.
func (p *ExecProcess) Signal(sig syscall.Signal) error {
	if !p.tell("signal " + strconv.Itoa(int(sig))) {
		return errors.New("exec worker gone")
	}
	return nil
}

// Kill SIGKILLs the program's whole process group now — or, when it is not
// started yet, as soon as it is. Safe to call more than once.
func (p *ExecProcess) Kill() {
	p.mu.Lock()
	first := !p.killed
	p.killed = true
	shim := p.shim
	p.mu.Unlock()
	if shim == nil {
		return
	}
	if !p.tell("signal " + strconv.Itoa(int(syscall.SIGKILL))) {
		p.killGroupAndShim(shim)
	}
	if first {
		go func() {
			// A shim that does not end after the group is gone is itself
			// stuck: lanesd ends the group and the shim itself.
			select {
			case <-p.exited:
			case <-time.After(reapWait):
				p.killGroupAndShim(shim)
			}
		}()
	}
}

// killGroupAndShim is the last resort when the shim cannot be told: the
// group is SIGKILLed from here (safe while the shim lives and has not
// reported the program's end: the leader is unreaped, so its pid, the
// group's id, cannot have been reused), then the shim.
func (p *ExecProcess) killGroupAndShim(shim *os.Process) {
	p.mu.Lock()
	pid, reported := p.pid, p.reported
	p.mu.Unlock()
	if pid > 0 && !reported && shim.Signal(syscall.Signal(0)) == nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	_ = shim.Kill()
}

// Quit ends a hung program: SIGKILL to its group. (A Go worker prints its
// goroutines on SIGQUIT first; a program of another language may treat
// SIGQUIT as a graceful stop, which a hung one would not finish.)
func (p *ExecProcess) Quit(time.Duration, int) string {
	p.Kill()
	select {
	case <-p.exited:
	case <-time.After(reapWait):
	}
	return ""
}

// Stop sends the stop signal to the group, waits up to the stop timeout
// (or ctx) for the program to exit, then SIGKILLs the group.
func (p *ExecProcess) Stop(ctx context.Context) {
	if p.Signal(p.spec.StopSignal) == nil {
		t := time.NewTimer(p.spec.StopTimeout)
		select {
		case <-p.exited:
		case <-t.C:
			p.spec.Log.Warn("exec worker did not stop in time; killing its process group",
				"pid", p.PID(), "stop_signal", shared.SignalName(p.spec.StopSignal), "stop_timeout", logging.Dur(p.spec.StopTimeout))
		case <-ctx.Done():
		}
		t.Stop()
	}
	p.Kill()
	select {
	case <-p.exited:
	case <-time.After(reapWait):
		p.spec.Log.Warn("exec worker did not exit after SIGKILL", "pid", p.PID())
	}
}

// RSS returns the resident size of the program's whole process group.
func (p *ExecProcess) RSS() int64 {
	pid := p.PID()
	if pid == 0 {
		return 0
	}
	select {
	case <-p.exited:
		return 0
	default:
	}
	return groupRSS(pid)
}

// WhereHung describes where the processes of the program's group wait:
// an app server runs the request in a process it forked (gunicorn's
// worker), not in the one lanes started, so each process of the group is
// named with its threads' wait channels (at most 8 processes); sysc is
// that of the last one listed that is not the leader, else the leader's.
func (p *ExecProcess) WhereHung() (wchan, sysc string) {
	pid := p.PID()
	pids := groupPIDs(pid)
	if len(pids) <= 1 {
		return whereHung(pid)
	}
	var parts []string
	for i, q := range pids {
		if i == 8 {
			parts = append(parts, fmt.Sprintf("(%d more)", len(pids)-8))
			break
		}
		w, sc := whereHung(q)
		parts = append(parts, fmt.Sprintf("%d: %s", q, w))
		if q != pid || sysc == "" {
			sysc = fmt.Sprintf("%d: %s", q, sc)
		}
	}
	return strings.Join(parts, "; "), sysc
}

// cleanup removes the worker's sockets from the run directory.
func (p *ExecProcess) cleanup() {
	if p.socket != "" {
		_ = os.Remove(p.socket)
	}
	if p.notify != "" {
		_ = os.Remove(p.notify)
	}
}

// socketPair returns two connected unix stream sockets, close-on-exec.
func socketPair() (*os.File, *os.File, error) {
	// Non-blocking, so that os.NewFile makes them pollable: write
	// deadlines work and a Close wakes a blocked Read.
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "lanes-control"), os.NewFile(uintptr(fds[1]), "lanes-control"), nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// listening says a TCP socket listens on port of 127.0.0.1 or of every
// address (/proc/net/tcp and tcp6: state 0A).
func listening(port int) bool {
	hexPort := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 4 || fs[3] != "0A" || !strings.HasSuffix(fs[1], hexPort) {
				continue
			}
			switch addr := strings.TrimSuffix(fs[1], hexPort); addr {
			case "0100007F", "00000000", "00000000000000000000000000000000",
				"00000000000000000000000001000000", "0000000000000000FFFF00000100007F":
				return true
			}
		}
	}
	return false
}

// groupRSS sums the resident size of every process in process group pgid.
func groupRSS(pgid int) int64 {
	var total int64
	for _, pid := range groupPIDs(pgid) {
		if n, err := shared.RSS(pid); err == nil {
			total += n
		}
	}
	return total
}

// groupPIDs lists the processes of process group pgid, the leader first.
func groupPIDs(pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := strconv.Itoa(pgid)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and ")".
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 || f[2] != want {
			continue
		}
		if pid == pgid {
			pids = append([]int{pid}, pids...)
		} else {
			pids = append(pids, pid)
		}
	}
	return pids
}

var _ Proc = (*ExecProcess)(nil)
