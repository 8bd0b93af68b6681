//go:build linux

package proc

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// The shim is the parent of one exec worker: lanesd runs itself as
//
//	lanesd exec-shim [-rundir DIR] -- PROGRAM ARG...
//
// (ShimCommand) and the shim starts PROGRAM in a process group of its own.
// It exists because nothing else can keep the promise that no process of a
// worker outlives lanesd: Pdeathsig reaches only a direct child, and app
// servers fork (gunicorn's arbiter and its workers), so the group must be
// ended by a process that is still alive when lanesd dies. The shim is that
// process: its end of the control socket reads EOF the moment lanesd is
// gone, whatever killed it, and it then SIGKILLs the group.
//
// It is also the one process that may signal the group. It reaps the
// program itself, and signals the group only while the program is not
// reaped (a zombie still holds its pid, which is the group's id), so no
// signal can reach a process group that reused the id. lanesd asks it to
// over the control socket.
//
// Protocol on the control socket (fd 3 of the shim), one line each:
//
//	shim → lanesd: "pid N"     the program started, as process (and group) N
//	shim → lanesd: "exit W"    it ended, with wait status W (the group is killed)
//	lanesd → shim: "signal S"  send signal S to the group
//
// An exec worker in "fd" mode gets its listening socket as the shim's fd 4
// and the program's fd 3, with LISTEN_FDS=1 and LISTEN_FDNAMES set by
// lanesd; LISTEN_PID must be the program's own pid, which only the program
// can know before it runs: the shim starts "lanesd exec-shim -exec --
// PROGRAM ARG...", which sets it and execs PROGRAM in the same process.

// ShimCommand is the hidden subcommand of lanesd that runs the shim.
const ShimCommand = "exec-shim"

// Shim file descriptors (after stdin, stdout, stderr).
const (
	shimCtlFD    = 3
	shimListenFD = 4
)

// shimParentSignal is the shim's Pdeathsig: lanesd is gone. (SIGKILL, the
// default for children, would kill the shim before it could end the group.)
const shimParentSignal = syscall.SIGUSR1

// ShimMain runs the shim (or, with -exec, the step that becomes the
// program) and returns its exit status.
func ShimMain(args []string) int {
	if len(args) > 0 && args[0] == "-exec" {
		return execProgram(args[1:])
	}
	runDir := ""
	if len(args) > 2 && args[0] == "-rundir" {
		runDir, args = args[1], args[2:]
	}
	if len(args) < 2 || args[0] != "--" {
		fmt.Fprintln(os.Stderr, "lanesd exec-shim: started by hand; lanesd runs this itself for exec lane workers")
		return 2
	}
	argv := args[1:]
	// Fork from one thread that never exits: the program's Pdeathsig fires
	// when the forking thread ends, not the process.
	runtime.LockOSThread()
	syscall.CloseOnExec(shimCtlFD)
	ctl := os.NewFile(shimCtlFD, "lanes-control")
	if ctl == nil {
		fmt.Fprintln(os.Stderr, "lanesd exec-shim: no control socket")
		return 2
	}
	// The group's signals are lanesd's to send; a terminal's or systemd's
	// reach the program on their own. They are caught and dropped, not
	// ignored: an ignored signal stays ignored across exec, and the
	// program could not trap its own stop_signal (sh cannot trap one
	// ignored on entry; Python would install no KeyboardInterrupt).
	dropped := make(chan os.Signal, 8)
	signal.Notify(dropped, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU)
	go func() {
		for range dropped {
		}
	}()
	parentGone := make(chan os.Signal, 1)
	signal.Notify(parentGone, shimParentSignal)

	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lanesd exec-shim:", err)
		return 2
	}
	cmd := exec.Command(self, append([]string{ShimCommand, "-exec", "--"}, argv...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	if os.Getenv("LISTEN_FDS") == "1" {
		syscall.CloseOnExec(shimListenFD)
		cmd.ExtraFiles = []*os.File{os.NewFile(shimListenFD, "lanes-listen")}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "lanesd exec-shim: start %s: %v\n", argv[0], err)
		return 1
	}
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}
	g := &group{pid: cmd.Process.Pid}
	fmt.Fprintf(ctl, "pid %d\n", g.pid)

	var orphaned atomic.Bool // lanesd died without stopping us
	// lanesd's requests; EOF: lanesd is gone.
	go func() {
		sc := bufio.NewScanner(ctl)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "signal "); ok {
				if n, err := strconv.Atoi(s); err == nil {
					g.signal(syscall.Signal(n))
				}
			}
		}
		orphaned.Store(true)
		g.signal(syscall.SIGKILL)
	}()
	go func() {
		<-parentGone
		orphaned.Store(true)
		g.signal(syscall.SIGKILL)
	}()

	// Learn of the program's end without reaping it, end what is left of
	// its group (forked workers), and only then reap: until then the pid
	// cannot be reused, so g.signal never hits another group.
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, g.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != syscall.EINTR {
			break
		}
	}
	g.reap()
	_ = cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	fmt.Fprintf(ctl, "exit %d\n", uint32(ws))
	if orphaned.Load() && runDir != "" && strings.HasPrefix(filepath.Base(runDir), "lanes-") {
		// lanesd was killed and cannot remove its run directory (sockets,
		// stack dumps): the shims it left do, the first one to get here.
		_ = os.RemoveAll(runDir)
	}
	return 0
}

// group is the program's process group, signalled only while the program
// is not reaped.
type group struct {
	mu     sync.Mutex
	pid    int
	reaped bool
}

func (g *group) signal(sig syscall.Signal) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.reaped {
		_ = syscall.Kill(-g.pid, sig)
	}
}

// reap kills what is left of the group and marks it gone; the caller then
// reaps the program.
func (g *group) reap() {
	g.mu.Lock()
	defer g.mu.Unlock()
	_ = syscall.Kill(-g.pid, syscall.SIGKILL)
	g.reaped = true
}

// execProgram is the last step before the program: it sets LISTEN_PID to
// its own pid (the program's, after exec) and becomes the program.
func execProgram(args []string) int {
	if len(args) < 2 || args[0] != "--" {
		fmt.Fprintln(os.Stderr, "lanesd exec-shim -exec: no program")
		return 2
	}
	argv := args[1:]
	env := os.Environ()
	if os.Getenv("LISTEN_FDS") != "" {
		env = append(env, "LISTEN_PID="+strconv.Itoa(os.Getpid()))
	}
	err := syscall.Exec(argv[0], argv, env)
	fmt.Fprintf(os.Stderr, "lanesd exec-shim: exec %s: %v\n", argv[0], err)
	return 127
}
