package fetchd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrCacheInUse is wrapped by every error about a cache_dir that another
// process holds.
var ErrCacheInUse = errors.New("fetchd: cache_dir in use")

// lockFile is the pid file badger writes beside its directory lock.
const lockFile = "LOCK"

// CheckCacheDir reports whether dir can serve as fetchd's cache: it is (or
// can be created as) a writable directory and no other lanesd's fetchd holds
// it. The fetchd of the calling lanesd (a child of this process) and a cache
// open in this very process do not count as "other": a lanesd is never
// blocked by its own. It never opens the database, and holds the lock only
// for the instant of the probe; a fetchd starting in that instant retries
// the lock.
func CheckCacheDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return creatable(dir)
	case err != nil:
		return fmt.Errorf("cache_dir %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("cache_dir %s is not a directory", dir)
	}
	if err := syscall.Access(dir, 0o2|0o1); err != nil { // W_OK|X_OK
		return fmt.Errorf("cache_dir %s is not writable: %w", dir, err)
	}
	busy, pid, err := probeLock(dir)
	if err != nil {
		return fmt.Errorf("cache_dir %s: %w", dir, err)
	}
	if !busy || pid == os.Getpid() || (pid > 0 && parentOf(pid) == os.Getpid()) {
		return nil
	}
	return inUseError(dir, pid)
}

// CacheInUse is CheckCacheDir's answer when it is ErrCacheInUse, else nil:
// whatever else is wrong with dir, fetchd reports when it starts. The
// supervisor calls it (as supervisor.Options.FetchdCacheInUse) before each
// start of its fetchd, which would otherwise wait for the lock, exit, and
// crash-loop.
func CacheInUse(dir string) error {
	if err := CheckCacheDir(dir); errors.Is(err, ErrCacheInUse) {
		return err
	}
	return nil
}

// probeLock tries badger's directory lock (flock on the directory) and
// releases it at once. busy reports another holder, whose pid is read from
// badger's LOCK file (0 if unknown).
func probeLock(dir string) (busy bool, pid int, err error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, 0, err
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, lockPID(dir), nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("probe lock: %w", err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, 0, nil
}

// inUseError names the holder: the lanesd that runs the fetchd holding the
// lock when it can be told, else the holder itself.
func inUseError(dir string, pid int) error {
	switch {
	case pid <= 0:
		return fmt.Errorf("cache_dir %s is in use by another lanesd: %w", dir, ErrCacheInUse)
	case parentOf(pid) > 1:
		return fmt.Errorf("cache_dir %s is in use by another lanesd (pid %d, its fetchd pid %d): %w", dir, parentOf(pid), pid, ErrCacheInUse)
	}
	return fmt.Errorf("cache_dir %s is in use by another lanesd (pid %d): %w", dir, pid, ErrCacheInUse)
}

func lockPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, lockFile))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// parentOf returns pid's parent from /proc, or 0.
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may hold spaces: skip past it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// creatable reports whether dir could be created: its nearest existing
// ancestor is a writable directory.
func creatable(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("cache_dir %s: %w", dir, err)
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("cache_dir %s cannot be created: %s is not a directory", dir, p)
			}
			if err := syscall.Access(p, 0o2|0o1); err != nil {
				return fmt.Errorf("cache_dir %s cannot be created in %s: %w", dir, p, err)
			}
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) || p == filepath.Dir(p) {
			return fmt.Errorf("cache_dir %s: %w", dir, err)
		}
	}
}
