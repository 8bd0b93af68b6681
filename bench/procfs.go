package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// What the kernel says about the processes measured (Linux /proc): memory,
// CPU time and bytes through read/write, read the same way for lanesd, its
// workers, fetchd and nginx.

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture Go supports.
const clockTick = 100

// memInfo is a process's resident size now and its high-water mark, bytes.
type memInfo struct {
	rss, hwm int64
}

// readMem reads VmRSS and VmHWM from /proc/PID/status.
func readMem(pid int) (memInfo, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memInfo{}, err
	}
	var m memInfo
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64) // kB
		switch k {
		case "VmRSS":
			m.rss = n << 10
		case "VmHWM":
			m.hwm = n << 10
		}
	}
	return m, nil
}

// cpuTicks returns utime + stime of the process, every thread included,
// in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may hold spaces: count from its ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no )", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s, nil
}

// ioBytes returns rchar + wchar of /proc/PID/io: the bytes the process
// passed through read- and write-like system calls (sockets included),
// each a copy between user and kernel memory.
func ioBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "rchar" || k == "wchar") {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			sum += n
		}
	}
	return sum, nil
}

// writeBytes returns write_bytes of /proc/PID/io: what the process made
// the kernel write to storage, counted as page-cache pages are dirtied (a
// page written again before it reaches the disk counts once). For the
// proxies measured, that is their temporary files.
func writeBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/io: no write_bytes", pid)
}

// childPIDs returns the pids whose parent is pid (nginx's workers).
func childPIDs(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// fmtMB formats bytes as megabytes with one decimal.
func fmtMB(n int64) string {
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}

// procMem is one process's memory across a scenario.
type procMem struct {
	role   string // "front" or "worker"
	pid    int
	before int64   // VmRSS before; 0 when the process is new
	after  memInfo // at the end
}

func (p procMem) growth() int64 { return p.after.hwm - p.before }

// memSnapshot returns lanesd's own and its workers' memory.
func memSnapshot(l *server) ([]procMem, error) {
	st, err := l.status()
	if err != nil {
		return nil, err
	}
	out := []procMem{{role: "front", pid: l.PID}}
	for _, pid := range workerPIDs(st, "default") {
		out = append(out, procMem{role: "worker", pid: pid})
	}
	for i := range out {
		m, err := readMem(out[i].pid)
		if err != nil {
			return nil, err
		}
		out[i].after = m
	}
	return out, nil
}

// memGrowth pairs a snapshot before with one after.
func memGrowth(before, after []procMem) []procMem {
	was := map[int]int64{}
	for _, p := range before {
		was[p.pid] = p.after.rss
	}
	for i := range after {
		after[i].before = was[after[i].pid]
	}
	return after
}

// printMem writes each process's growth and the ≤ 64 MB target.
func printMem(w io.Writer, procs []procMem) {
	worst := printMemTable(w, procs)
	fmt.Fprintf(w, "\n   target: no process grows by more than 64 MB: largest %s → %s\n", fmtMB(worst), verdict(worst <= 64<<20))
}

// printMemTable writes each process's growth and returns the largest.
func printMemTable(w io.Writer, procs []procMem) int64 {
	fmt.Fprintf(w, "\n   memory (VmRSS before, VmHWM = peak, VmRSS after; growth = peak − before):\n\n")
	var t table
	t.row("process", "pid", "RSS before", "peak", "RSS after", "growth")
	worst := int64(0)
	for _, p := range procs {
		before := fmtMB(p.before)
		if p.before == 0 {
			before = "(new)"
		}
		t.row(p.role, strconv.Itoa(p.pid), before, fmtMB(p.after.hwm), fmtMB(p.after.rss), fmtMB(p.growth()))
		worst = max(worst, p.growth())
	}
	t.write(w, "   ")
	return worst
}
