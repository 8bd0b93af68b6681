package lane

import (
	"context"
	"fmt"
	"net"
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
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
)

// State is where a worker process is in its life.
type State int

const (
	Starting State = iota // forked, handshaking
	Ready                 // in rotation
	Retiring              // out of rotation; stopped gracefully once idle (drain, recycle)
	Killing               // out of rotation after a hard timeout; SIGKILLed once its other requests end
	Stopping              // lane shutdown
	Dead                  // exited and reaped
)

// String returns the state's name as the admin API shows it.
func (s State) String() string {
	switch s {
	case Starting:
		return "starting"
	case Ready:
		return "ready"
	case Retiring:
		return "retiring"
	case Killing:
		return "killing"
	case Stopping:
		return "stopping"
	case Dead:
		return "dead"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Timeouts of the control plane.
const (
	startTimeout  = 10 * time.Second // fork to handshake
	healthTimeout = 2 * time.Second
	killGrace     = 2 * time.Second // graceful plugin shutdown before SIGKILL
)

// Worker is one worker process of a lane. Its state and counters are
// guarded by the lane's mutex.
type Worker struct {
	lane    *Lane
	seq     int
	pid     int
	sock    string
	started time.Time
	ready   time.Time

	client *plugin.Client
	ctl    shared.Control
	hc     *fasthttp.HostClient
	runner *procRunner

	// guarded by lane.mu
	state    State
	inflight int
	served   uint64
	rss      int64
	suspect  bool // a request failed on its data plane: not picked until a health check clears it

	killOnce sync.Once
}

// PID returns the worker's process id.
func (w *Worker) PID() int { return w.pid }

// Client returns the data-plane client: persistent HTTP/1.1 connections over
// the worker's unix socket, no retries, streamed response bodies.
func (w *Worker) Client() *fasthttp.HostClient { return w.hc }

// spec is everything needed to start a worker process.
type spec struct {
	command []string // argv; argv[0] resolved by exec.LookPath
	env     []string
	runDir  string
	log     hclog.Logger
	sp      *Spawner
	conc    int
}

// startWorker forks a worker, completes the go-plugin handshake and checks
// its health. On error nothing is left running.
func startWorker(ctx context.Context, s spec, w *Worker) error {
	w.sock = filepath.Join(s.runDir, fmt.Sprintf("w-%s-%d.sock", w.lane.name, w.seq))
	_ = os.Remove(w.sock)

	var r *procRunner
	w.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  shared.Handshake,
		Plugins:          shared.PluginMap(nil),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     startTimeout,
		Logger:           s.log,
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: s.runDir},
		RunnerFunc: func(_ hclog.Logger, pc *exec.Cmd, _ string) (runner.Runner, error) {
			cmd := exec.Command(s.command[0], s.command[1:]...)
			// go-plugin's cmd carries the host environment plus its own
			// handshake variables; ours come last and win.
			cmd.Env = append(append(pc.Env, s.env...), shared.EnvSocket+"="+w.sock)
			var err error
			r, err = newProcRunner(s.sp, cmd)
			return r, err
		},
	})
	fail := func(err error) error {
		w.hardKill()
		return err
	}
	rpc, err := w.client.Client()
	if r != nil {
		w.runner = r
		w.pid = r.pid
	}
	if err != nil {
		return fail(fmt.Errorf("start %s: %w", s.command[0], err))
	}
	raw, err := rpc.Dispense(shared.PluginName)
	if err != nil {
		return fail(fmt.Errorf("dispense: %w", err))
	}
	w.ctl = raw.(shared.Control)
	hctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	if _, err := w.ctl.Health(hctx); err != nil {
		return fail(fmt.Errorf("first health check: %w", err))
	}
	sock := w.sock
	w.hc = &fasthttp.HostClient{
		Addr: sock,
		Dial: func(string) (net.Conn, error) {
			return net.DialTimeout("unix", sock, time.Second)
		},
		// Admission already caps requests at concurrency; the slack covers
		// connections still closing.
		MaxConns:                      s.conc + 2,
		MaxIdemponentCallAttempts:     1,
		RetryIfErr:                    func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		StreamResponseBody:            true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		MaxIdleConnDuration:           5 * time.Minute,
		ReadBufferSize:                32 << 10,
	}
	w.ready = time.Now()
	return nil
}

// exited is closed once the process has been reaped.
func (w *Worker) exited() <-chan struct{} { return w.runner.exited }

// exitErr describes how the process ended; valid after exited().
func (w *Worker) exitErr() string {
	if w.runner.err == nil {
		return "exit status 0"
	}
	return w.runner.err.Error()
}

// hardKill SIGKILLs the process at once and lets go-plugin clean up after
// it. go-plugin's Kill alone first sends a Shutdown RPC without a deadline,
// which blocks forever on a wedged worker.
func (w *Worker) hardKill() {
	w.killOnce.Do(func() {
		if w.pid > 0 {
			_ = syscall.Kill(w.pid, syscall.SIGKILL)
		}
		if w.hc != nil {
			w.hc.CloseIdleConnections()
		}
		go w.client.Kill()
		_ = os.Remove(w.sock)
	})
}

// stop asks the worker to finish its running requests (up to ctx) and to
// exit, then makes sure it has: SIGKILL if it has not within killGrace.
func (w *Worker) stop(ctx context.Context) {
	if w.ctl != nil {
		_ = w.ctl.Drain(ctx)
	}
	done := make(chan struct{})
	go func() {
		w.client.Kill() // graceful plugin shutdown
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(killGrace):
	}
	w.hardKill()
	select {
	case <-w.exited():
	case <-time.After(killGrace):
		w.lane.log.Warn("worker did not exit after SIGKILL", "pid", w.pid)
	}
}
