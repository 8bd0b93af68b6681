//go:build linux

// Package proc supervises one child process of lanesd — a lane's worker or
// fetchd: fork (from the Spawner's thread, with Pdeathsig), the go-plugin
// handshake, the first health check, the control plane, and the ways a
// process ends: a graceful stop, an immediate SIGKILL, and the two-phase
// kill of a hung Go process (SIGQUIT for its goroutine stacks, then
// SIGKILL). Every signal goes through the os.Process of the fork, a pidfd on
// current Linux, so no signal can reach another process that reused the pid
// after this one was reaped. Lanes and fetchd use it alike; it knows nothing
// of either.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/lanes-dev/lanes/shared"
)

// Timeouts of the control plane.
const (
	StartTimeout  = 10 * time.Second // fork to handshake
	HealthTimeout = 2 * time.Second
	killGrace     = 2 * time.Second // graceful plugin shutdown before SIGKILL
	reapWait      = 2 * time.Second // SIGKILL to reaped, before a warning
)

// Spec is what it takes to start a process.
type Spec struct {
	Command []string // argv; argv[0] resolved by exec.LookPath
	Env     []string // added to the environment, after go-plugin's own
	RunDir  string   // private 0700 directory for sockets
	Name    string   // unique within RunDir; names the data socket NAME.sock
	Log     hclog.Logger
	Spawner *Spawner
}

// Process is one child process. Its methods are safe for concurrent use,
// and Kill may be called at any time, even while Start runs.
type Process struct {
	spec   Spec
	socket string
	client *plugin.Client
	ctl    shared.Control

	mu      sync.Mutex
	proc    *os.Process // set at fork
	killed  bool        // Kill was called; a fork after it is killed at once
	runner  *procRunner
	capture *bytes.Buffer // stderr copied here while a Quit collects it
	capMax  int

	exited   chan struct{}
	exitOnce sync.Once
	exitErr  error
	ready    time.Time

	releaseOnce sync.Once
}

// New returns a process that Start will fork.
func New(spec Spec) *Process {
	if spec.Log == nil {
		spec.Log = hclog.NewNullLogger()
	}
	return &Process{
		spec:   spec,
		socket: filepath.Join(spec.RunDir, spec.Name+".sock"),
		exited: make(chan struct{}),
	}
}

// Socket is the data-plane socket path the process is told to serve on
// (environment shared.EnvSocket).
func (p *Process) Socket() string { return p.socket }

// Start forks the process, completes the go-plugin handshake and checks its
// health once. On error nothing is left running and Exited is closed once
// the process (if it was forked) is reaped.
func (p *Process) Start(ctx context.Context) error {
	_ = os.Remove(p.socket)
	s := p.spec
	p.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  shared.Handshake,
		Plugins:          shared.PluginMap(nil),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     StartTimeout,
		Logger:           pluginLog{s.Log},
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: s.RunDir},
		RunnerFunc: func(_ hclog.Logger, pc *exec.Cmd, _ string) (runner.Runner, error) {
			cmd := exec.Command(s.Command[0], s.Command[1:]...)
			// go-plugin's cmd carries the host environment plus its own
			// handshake variables; ours come last and win.
			cmd.Env = append(append(pc.Env, s.Env...), shared.WorkerEnv{Socket: p.socket}.Encode()...)
			return newProcRunner(p, cmd)
		},
	})
	fail := func(err error) error {
		p.Kill()
		p.mu.Lock()
		forked := p.runner != nil && p.proc != nil
		p.mu.Unlock()
		if !forked {
			p.markExited(err)
		}
		return err
	}
	rpc, err := p.client.Client()
	if err != nil {
		return fail(fmt.Errorf("start %s: %w", s.Command[0], err))
	}
	raw, err := rpc.Dispense(shared.PluginName)
	if err != nil {
		return fail(fmt.Errorf("dispense: %w", err))
	}
	p.ctl = raw.(shared.Control)
	hctx, cancel := context.WithTimeout(ctx, HealthTimeout)
	defer cancel()
	if _, err := p.ctl.Health(hctx); err != nil {
		return fail(fmt.Errorf("first health check: %w", err))
	}
	p.mu.Lock()
	killed := p.killed
	p.ready = time.Now()
	p.mu.Unlock()
	if killed {
		return fail(errors.New("killed while starting"))
	}
	return nil
}

// PID returns the process id, or 0 before the fork.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return 0
	}
	return p.proc.Pid
}

// Ready returns when Start succeeded.
func (p *Process) Ready() time.Time { p.mu.Lock(); defer p.mu.Unlock(); return p.ready }

// Exited is closed once the process has been reaped (or failed to fork).
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitErr describes how the process ended; valid once Exited is closed.
func (p *Process) ExitErr() string {
	if p.exitErr == nil {
		return "exit status 0"
	}
	return p.exitErr.Error()
}

// Signaled returns the signal that ended the process, if one did; valid
// once Exited is closed.
func (p *Process) Signaled() (syscall.Signal, bool) {
	var ee *exec.ExitError
	if !errors.As(p.exitErr, &ee) {
		return 0, false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0, false
	}
	return ws.Signal(), true
}

func (p *Process) markExited(err error) {
	p.exitOnce.Do(func() {
		p.exitErr = err
		close(p.exited)
	})
}

// Health asks the process over the control plane, bounded by HealthTimeout.
func (p *Process) Health(ctx context.Context) (shared.WorkerStats, error) {
	ctx, cancel := context.WithTimeout(ctx, HealthTimeout)
	defer cancel()
	return p.ctl.Health(ctx)
}

// Signal sends sig through the fork's os.Process; nothing once it has been
// reaped (os.ErrProcessDone) or before the fork.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	pr := p.proc
	p.mu.Unlock()
	if pr == nil {
		return errors.New("not started")
	}
	return pr.Signal(sig)
}

// Kill SIGKILLs the process now — or, when it is not forked yet, as soon as
// it is — and lets go-plugin clean up after it. go-plugin's Kill alone would
// first send a Shutdown RPC without a deadline, which blocks forever on a
// wedged process. Safe to call more than once.
func (p *Process) Kill() {
	p.mu.Lock()
	first := !p.killed
	p.killed = true
	pr := p.proc
	p.mu.Unlock()
	if pr != nil {
		_ = pr.Kill()
	}
	if first {
		_ = os.Remove(p.socket)
		go p.release()
	}
}

// release frees what go-plugin holds for the process once: its gRPC
// connection (which would otherwise redial a dead process forever, two
// goroutines each), its broker and its socket directory. A process that
// dies on its own is released as well as one that is killed.
func (p *Process) release() {
	if p.client == nil {
		return // not started: nothing held yet
	}
	p.releaseOnce.Do(p.client.Kill)
}

// Quit ends a hung process in two phases: SIGQUIT, which makes a Go
// process print every goroutine's stack (GOTRACEBACK=all) and exit; then,
// after at most grace, SIGKILL. It returns what the process wrote to stderr
// meanwhile, at most max bytes. A process that is not Go simply dies of the
// SIGQUIT or of the SIGKILL.
func (p *Process) Quit(grace time.Duration, max int) string {
	p.mu.Lock()
	p.capture, p.capMax = new(bytes.Buffer), max
	p.mu.Unlock()
	if err := p.Signal(syscall.SIGQUIT); err == nil {
		select {
		case <-p.exited:
		case <-time.After(grace):
		}
	}
	p.Kill()
	select {
	case <-p.exited: // stderr is drained before the reap
	case <-time.After(reapWait):
	}
	p.mu.Lock()
	out := p.capture.String()
	p.capture = nil
	p.mu.Unlock()
	return out
}

// Stop asks the process to finish its running requests (up to ctx) and to
// exit, then makes sure it has: SIGKILL if it has not within killGrace.
func (p *Process) Stop(ctx context.Context) {
	if p.ctl != nil {
		_ = p.ctl.Drain(ctx)
	}
	done := make(chan struct{})
	go func() {
		p.release() // graceful plugin shutdown
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(killGrace):
	}
	p.Kill()
	select {
	case <-p.exited:
	case <-time.After(reapWait):
		p.spec.Log.Warn("process did not exit after SIGKILL", "pid", p.PID())
	}
}

// RSS returns the process's resident set size in bytes (0 once gone).
func (p *Process) RSS() int64 {
	pid := p.PID()
	if pid == 0 {
		return 0
	}
	n, _ := shared.RSS(pid)
	return n
}

// WhereHung describes where the process's threads wait: each thread's
// kernel wait channel, counted, and the main thread's system call.
func (p *Process) WhereHung() (wchan, sysc string) { return whereHung(p.PID()) }

// procRunner is go-plugin's runner for a child: the stock command runner,
// except that the fork happens on the Spawner's thread, the process's exit
// is published (go-plugin offers no exit notification), and stderr can be
// captured by Quit.
type procRunner struct {
	p      *Process
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr io.ReadCloser
}

func newProcRunner(p *Process, cmd *exec.Cmd) (*procRunner, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	r := &procRunner{p: p, cmd: cmd, stdout: stdout, stderr: stderr}
	p.mu.Lock()
	p.runner = r
	p.mu.Unlock()
	return r, nil
}

func (r *procRunner) Start(context.Context) error {
	if err := r.p.spec.Spawner.Start(r.cmd); err != nil {
		r.p.markExited(err)
		return err
	}
	r.p.mu.Lock()
	r.p.proc = r.cmd.Process
	killed := r.p.killed
	r.p.mu.Unlock()
	if killed { // Kill came while forking
		_ = r.cmd.Process.Kill()
	}
	return nil
}

// Wait is called once by go-plugin, after the output pipes are drained.
// The data socket goes before Exited is closed, so that it can never
// remove the socket of the process started after this one under the same
// name (fetchd's).
func (r *procRunner) Wait(context.Context) error {
	err := r.cmd.Wait()
	_ = os.Remove(r.p.socket)
	r.p.markExited(err)
	go r.p.release() // not here: go-plugin's Kill waits for this call to return
	return err
}

func (r *procRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (r *procRunner) Diagnose(context.Context) string {
	return fmt.Sprintf("%s did not complete the lanes handshake: is it built on worker.Serve?", r.cmd.Path)
}

func (r *procRunner) Stdout() io.ReadCloser { return newHandshakeOnly(r.stdout, r.p.spec.Log) }
func (r *procRunner) Stderr() io.ReadCloser { return capturing{r.stderr, r.p} }
func (r *procRunner) Name() string          { return r.cmd.Path }
func (r *procRunner) ID() string            { return strconv.Itoa(r.p.PID()) }

func (r *procRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r *procRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }

var _ runner.Runner = (*procRunner)(nil)

// capturing copies stderr into the process's capture buffer while Quit
// collects it; go-plugin still logs every line.
type capturing struct {
	io.ReadCloser
	p *Process
}

func (c capturing) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	if n > 0 {
		c.p.mu.Lock()
		if buf := c.p.capture; buf != nil && buf.Len() < c.p.capMax {
			buf.Write(b[:min(n, c.p.capMax-buf.Len())])
		}
		c.p.mu.Unlock()
	}
	return n, err
}

var _ Proc = (*Process)(nil)
