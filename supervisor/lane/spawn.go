package lane

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"

	"github.com/hashicorp/go-plugin/runner"
)

// Spawner forks every child of the supervisor from one goroutine locked to
// one OS thread that never exits. Children get Pdeathsig=SIGKILL, and the
// kernel delivers it when the *thread* that forked them exits, so forking
// from an arbitrary goroutine would kill workers whenever the Go runtime
// retires that thread. One Spawner serves a whole supervisor process.
type Spawner struct {
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// NewSpawner starts the spawning thread. It lives as long as the process.
func NewSpawner() *Spawner {
	s := &Spawner{reqs: make(chan spawnReq)}
	started := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread must outlive every child
		close(started)
		for r := range s.reqs {
			r.done <- r.cmd.Start()
		}
	}()
	<-started
	return s
}

// Start starts cmd on the spawning thread with Pdeathsig set.
func (s *Spawner) Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	done := make(chan error, 1)
	s.reqs <- spawnReq{cmd: cmd, done: done}
	return <-done
}

// procRunner is go-plugin's runner for a worker: the stock command runner,
// except that the fork happens on the Spawner's thread and the process's
// exit is published on a channel (go-plugin offers no exit notification).
type procRunner struct {
	cmd    *exec.Cmd
	sp     *Spawner
	stdout io.ReadCloser
	stderr io.ReadCloser
	pid    int
	exited chan struct{} // closed once the process is reaped
	err    error         // exit error; read after exited is closed
}

func newProcRunner(sp *Spawner, cmd *exec.Cmd) (*procRunner, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	return &procRunner{cmd: cmd, sp: sp, stdout: stdout, stderr: stderr, exited: make(chan struct{})}, nil
}

func (r *procRunner) Start(context.Context) error {
	if err := r.sp.Start(r.cmd); err != nil {
		close(r.exited)
		return err
	}
	r.pid = r.cmd.Process.Pid
	return nil
}

// Wait is called once by go-plugin, after the output pipes are drained.
func (r *procRunner) Wait(context.Context) error {
	r.err = r.cmd.Wait()
	close(r.exited)
	return r.err
}

func (r *procRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	if err := r.cmd.Process.Kill(); err != nil && err.Error() != "os: process already finished" {
		return err
	}
	return nil
}

func (r *procRunner) Diagnose(context.Context) string {
	return fmt.Sprintf("%s did not complete the lanes worker handshake: is it built on worker.Serve, and does it write nothing to stdout first?", r.cmd.Path)
}

func (r *procRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *procRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *procRunner) Name() string          { return r.cmd.Path }
func (r *procRunner) ID() string            { return strconv.Itoa(r.pid) }

func (r *procRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r *procRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }

var _ runner.Runner = (*procRunner)(nil)
