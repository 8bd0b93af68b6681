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
// supervisor is already gone: the caller exits 3. Without EnvParentPID it
// watches nothing.
func WatchSupervisor(log hclog.Logger) bool {
	sup, err := strconv.Atoi(os.Getenv(EnvParentPID))
	if err != nil {
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

// SelfRSS returns the resident set size of this process in bytes, from
// /proc/self/statm, or 0.
func SelfRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0
	}
	return resident * int64(syscall.Getpagesize())
}
