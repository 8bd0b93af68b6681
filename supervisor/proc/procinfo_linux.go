//go:build linux

package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// whereHung describes where the threads of pid wait, for the log line written
// before a hung worker is killed: each thread's kernel wait channel
// (/proc/PID/task/TID/wchan) counted, and the syscall of the main thread
// (/proc/PID/syscall: number and arguments, or "running").
func whereHung(pid int) (wchan, sysc string) {
	base := "/proc/" + strconv.Itoa(pid)
	counts := map[string]int{}
	tasks, _ := filepath.Glob(base + "/task/*/wchan")
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		w := strings.TrimSpace(string(b))
		if w == "" || w == "0" {
			w = "running"
		}
		counts[w]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, counts[k]))
	}
	wchan = strings.Join(parts, " ")
	if wchan == "" {
		wchan = "unknown"
	}
	if b, err := os.ReadFile(base + "/syscall"); err == nil {
		sysc = strings.TrimSpace(string(b))
		if f := strings.Fields(sysc); len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				sysc = syscallName(n) + " " + sysc
			}
		}
	} else {
		sysc = "unknown (" + err.Error() + ")"
	}
	return wchan, sysc
}
