package shared

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// parentPoll is how often a child process checks that its supervisor still
// lives.
const parentPoll = 200 * time.Millisecond

// WatchSupervisor makes a child process of lanesd (a worker, fetchd) exit
// with status 3 once the supervisor that started it is gone. Pdeathsig is
// the first layer; this catches the rest: a supervisor whose forking thread
// is gone, or a child started by something else. It watches the parent the
// process started under, which is not the supervisor when a wrapper (sh -c,
// go run) forks the child. It returns false, having logged why, when the
// supervisor is already gone: the caller exits 3. sup is the supervisor's
// pid from the environment (EnvParentPID); 0 watches nothing.
func WatchSupervisor(log hclog.Logger, sup int) bool {
	if sup == 0 {
		return true
	}
	ppid := os.Getppid()
	if ppid == 1 && sup != 1 {
		log.Warn("supervisor is gone; exiting", "was", sup)
		return false
	}
	go func() {
		t := time.NewTicker(parentPoll)
		defer t.Stop()
		for range t.C {
			if os.Getppid() != ppid {
				log.Warn("supervisor is gone; exiting", "was", ppid)
				os.Exit(3)
			}
		}
	}()
	return true
}

// SelfRSS returns the resident set size of this process in bytes, or 0.
func SelfRSS() int64 {
	n, _ := readRSS("/proc/self/statm")
	return n
}

// RSS returns the resident set size of process pid in bytes.
func RSS(pid int) (int64, error) {
	return readRSS("/proc/" + strconv.Itoa(pid) + "/statm")
}

// readRSS reads the resident set size from a statm file: its second field,
// in pages.
func readRSS(statm string) (int64, error) {
	b, err := os.ReadFile(statm)
	if err != nil {
		return 0, err
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0, fmt.Errorf("%s: unexpected %q: %w", statm, b, err)
	}
	return resident * int64(syscall.Getpagesize()), nil
}
