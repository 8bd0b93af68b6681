//go:build linux

package proc

import (
	"os/exec"
	"runtime"
	"syscall"
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

// Start starts cmd on the spawning thread with Pdeathsig set (SIGKILL
// unless cmd asks for another).
func (s *Spawner) Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if cmd.SysProcAttr.Pdeathsig == 0 { // an exec worker's shim asks for a signal it can handle
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	// A process group of its own: a terminal's Ctrl-C (SIGINT to the
	// foreground group) reaches lanesd alone, which then stops its children
	// gracefully, instead of every worker dying with requests in flight.
	cmd.SysProcAttr.Setpgid = true
	done := make(chan error, 1)
	s.reqs <- spawnReq{cmd: cmd, done: done}
	return <-done
}
