// Package lanestest starts lanesd as a real process, for the integration
// tests and the bench alike: it writes the config into a directory, runs
// lanesd on ephemeral ports, learns its addresses from its listening line
// and waits until its admin API answers, keeps its log, and stops it with a
// signal, then by force, and reaps it. Proc, the process underneath, is
// also what the bench starts its other servers with.
//
// It holds no testing.T: the tests wrap it with their own failure
// reporting, and the bench runs it from package main.
package lanestest

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ProcOptions say how a Proc is started and stopped.
type ProcOptions struct {
	// Signal stops the process politely; default SIGTERM.
	Signal syscall.Signal
	// Grace is how long Stop waits after Signal before SIGKILL; default 10s.
	Grace time.Duration
	// KillGroup sends Stop's SIGKILL to the process's whole group (every
	// Proc leads a group of its own), not only to the process.
	KillGroup bool
	// Pdeathsig kills the process when the thread that started it dies,
	// e.g. when the bench itself is SIGKILLed.
	Pdeathsig bool
	// WaitDelay bounds how long reaping waits for a grandchild that holds
	// the process's output open; default 5s.
	WaitDelay time.Duration
}

// Proc is one started process: a goroutine waits for it, so Done and Stop
// never poll.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	PID  int

	opt  ProcOptions
	done chan struct{} // closed once the process is reaped
	err  error         // cmd.Wait's; valid after done

	stopOnce sync.Once
	forced   atomic.Bool // Stop needed SIGKILL
}

// StartProc starts cmd in a process group of its own (as a shell starts a
// job: a terminal's Ctrl-C reaches the caller alone, and a test can signal
// the whole group).
func StartProc(name string, cmd *exec.Cmd, o ProcOptions) (*Proc, error) {
	if o.Signal == 0 {
		o.Signal = syscall.SIGTERM
	}
	if o.Grace == 0 {
		o.Grace = 10 * time.Second
	}
	if o.WaitDelay == 0 {
		o.WaitDelay = 5 * time.Second
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if o.Pdeathsig {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	cmd.WaitDelay = o.WaitDelay
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, PID: cmd.Process.Pid, opt: o, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process ended (exec.Cmd.Wait's error); valid after Done.
func (p *Proc) Err() error { return p.err }

// ExitCode is the process's exit status, -1 if a signal ended it; valid
// after Done.
func (p *Proc) ExitCode() int { return p.Cmd.ProcessState.ExitCode() }

// Running reports whether the process has not yet been reaped.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// ErrTimeout is Wait's answer for a process still running at its end.
var ErrTimeout = errors.New("lanestest: process still running")

// Wait waits up to timeout for the process to exit, and returns its exit
// status; ErrTimeout if it is still running.
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.ExitCode(), nil
	case <-t.C:
		return 0, ErrTimeout
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Stop ends the process politely (its Signal), then by force (SIGKILL
// after its Grace), and returns once it is reaped, reporting whether force
// was needed. Safe to call twice and from any goroutine.
func (p *Proc) Stop() (forced bool) {
	p.stopOnce.Do(func() {
		if !p.Running() {
			return
		}
		_ = p.Cmd.Process.Signal(p.opt.Signal)
		t := time.NewTimer(p.opt.Grace)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			p.forced.Store(true)
			if p.opt.KillGroup {
				_ = syscall.Kill(-p.PID, syscall.SIGKILL)
			} else {
				_ = p.Cmd.Process.Kill()
			}
			<-p.done
		}
	})
	<-p.done
	return p.forced.Load()
}

// Grace is how long Stop waits after the polite signal.
func (p *Proc) Grace() time.Duration { return p.opt.Grace }

// Forced reports whether Stop needed SIGKILL; valid after Stop.
func (p *Proc) Forced() bool { return p.forced.Load() }
