package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lanes-dev/lanes/internal/lanestest"
	"github.com/valyala/fasthttp"
)

// Scenario 12, breakdown: what a request costs, in upstream mode with the
// bench's origin (100-byte answers): per request and per process (front, workers, nginx, the
//     origin for reference): CPU time from /proc/PID/stat, system calls by
//     kind from strace -c, allocations where a process exposes them, and
//     bytes through read/write calls (/proc/PID/io rchar + wchar: each byte
//     there is one copy between user and kernel memory).

// bdProc is one process (or a group of processes of one role) measured.
type bdProc struct {
	role     string
	pids     []int
	ticks    int64
	bytes    int64
	allocs   float64 // per request; <0: not measured
	allocWhy string
	sys      map[string]int64 // strace -c calls by syscall
	sysReqs  int              // requests answered while strace counted
	sysWhy   string           // why there is no syscall figure
}

// bdTarget is lanes or nginx with the origin behind it.
type bdTarget struct {
	name     string
	requests int
	procs    []*bdProc
	err      error
}

func (b *bench) breakdown(ctx context.Context) (func(io.Writer), error) {
	origin, err := b.startOrigin()
	if err != nil {
		return nil, err
	}
	defer origin.Stop()
	strace, straceErr := exec.LookPath("strace")
	var targets []*bdTarget

	// lanes
	l, err := b.startReady("lanesd (breakdown)", b.proxyLanesConfig(origin.addr), lanesdOpts{logFile: true}, "/", len(originBody))
	if err != nil {
		return nil, err
	}
	defer l.Stop()
	st, err := l.status()
	if err != nil {
		return nil, err
	}
	lt := &bdTarget{name: fmt.Sprintf("lanes (%d workers × concurrency %d)", b.opt.proxyWorkers, b.opt.proxyConc)}
	front := &bdProc{role: "lanes front", pids: []int{l.PID}}
	workers := &bdProc{role: fmt.Sprintf("lanes workers (%d)", len(workerPIDs(st, "default"))), pids: workerPIDs(st, "default"),
		allocs: -1}
	lt.procs = []*bdProc{front, workers, {role: "origin (reference)", pids: []int{origin.PID}, allocs: -1, allocWhy: "n/a (not instrumented)"}}
	allocs0, allocOK := lanesMallocs(l)
	if !allocOK {
		front.allocs, front.allocWhy = -1, "n/a (lanesd's /metrics has no go_memstats_mallocs_total)"
	}
	b.progress("breakdown, lanes: %d requests", b.opt.breakdownReq)
	lt.err = b.bdMeasure(ctx, l.addr, lt)
	if allocOK && lt.err == nil {
		if a1, ok := lanesMallocs(l); ok {
			front.allocs = (a1 - allocs0) / float64(lt.requests)
		}
	}
	if lt.err == nil {
		b.progress("breakdown, lanes: the workers' allocations over %d requests (reported by their 5 s health checks)", b.opt.breakdownReq)
		workers.allocs, workers.allocWhy = b.workerAllocs(ctx, l, workers.pids)
		b.progress("breakdown, lanes: strace -c for %s", b.opt.straceTime)
		b.bdStrace(ctx, l.addr, strace, straceErr, lt)
	}
	l.log.mark()
	l.Stop()
	targets = append(targets, lt)

	// nginx
	nt := &bdTarget{name: "nginx"}
	if b.nginx == "" {
		nt.err = fmt.Errorf("not installed (apt-get install nginx-light)")
	} else if n, err := b.startNginx(b.nginx, origin.addr); err != nil {
		nt.err = err
	} else {
		defer n.Stop()
		nt.name = nginxVersion(b.nginx) + " (workers auto)"
		master := n.PID
		nt.procs = []*bdProc{
			{role: "nginx workers", pids: childPIDs(master), allocs: -1, allocWhy: "n/a (C: pool allocations, not exposed)"},
			{role: "nginx master", pids: []int{master}, allocs: -1, allocWhy: "n/a"},
			{role: "origin (reference)", pids: []int{origin.PID}, allocs: -1, allocWhy: "n/a (not instrumented)"},
		}
		b.progress("breakdown, nginx: %d requests", b.opt.breakdownReq)
		if nt.err = b.bdMeasure(ctx, n.addr, nt); nt.err == nil {
			b.progress("breakdown, nginx: strace -c for %s", b.opt.straceTime)
			b.bdStrace(ctx, n.addr, strace, straceErr, nt)
		}
	}
	targets = append(targets, nt)
	return func(w io.Writer) { b.printBreakdown(w, targets) }, ctx.Err()
}

// workerAllocs returns the heap objects lane "default"'s workers allocate
// per request. Workers report their count in their health checks, every
// 5 s: each reading waits for a fresh one.
func (b *bench) workerAllocs(ctx context.Context, l *server, pids []int) (float64, string) {
	read := func() (uint64, error) {
		time.Sleep(5500 * time.Millisecond)
		st, err := l.status()
		if err != nil {
			return 0, err
		}
		var sum uint64
		seen := 0
		if ln := st.Lane("default"); ln != nil {
			for _, w := range ln.Workers {
				if slices.Contains(pids, w.PID) {
					sum += w.Allocs
					seen++
				}
			}
		}
		if seen != len(pids) {
			return 0, fmt.Errorf("the workers changed during the measurement")
		}
		return sum, nil
	}
	a0, err := read()
	if err != nil {
		return -1, "n/a (" + err.Error() + ")"
	}
	n, errs := closedLoopN(ctx, l.addr, "/", b.opt.conns, b.opt.breakdownReq)
	a1, err := read()
	switch {
	case err != nil:
		return -1, "n/a (" + err.Error() + ")"
	case errs > 0 || n == 0:
		return -1, fmt.Sprintf("n/a (%d of %d requests failed)", errs, n)
	}
	return float64(a1-a0) / float64(n), ""
}

// lanesMallocs reads go_memstats_mallocs_total from lanesd's /metrics, if
// it is there.
func lanesMallocs(l *server) (float64, bool) {
	resp, err := http.Get("http://" + l.admin + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_mallocs_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// bdMeasure warms addr up, then sends opt.breakdownReq requests and takes
// each process's CPU ticks and bytes read+written over them.
func (b *bench) bdMeasure(ctx context.Context, addr string, t *bdTarget) error {
	closedLoop(ctx, addr, "/", b.opt.conns, time.Second)
	type reading struct{ ticks, bytes int64 }
	read := func() (map[*bdProc]reading, error) {
		out := map[*bdProc]reading{}
		for _, p := range t.procs {
			var r reading
			for _, pid := range p.pids {
				tk, err := cpuTicks(pid)
				if err != nil {
					return nil, err
				}
				by, err := ioBytes(pid)
				if err != nil {
					return nil, err
				}
				r.ticks += tk
				r.bytes += by
			}
			out[p] = r
		}
		return out, nil
	}
	before, err := read()
	if err != nil {
		return err
	}
	n, errs := closedLoopN(ctx, addr, "/", b.opt.conns, b.opt.breakdownReq)
	after, err := read()
	if err != nil {
		return err
	}
	if errs > 0 {
		return fmt.Errorf("%d of %d requests failed", errs, n)
	}
	t.requests = n
	for _, p := range t.procs {
		p.ticks = after[p].ticks - before[p].ticks
		p.bytes = after[p].bytes - before[p].bytes
	}
	return nil
}

// bdStrace counts every process's system calls with strace -c while the
// closed loop runs for opt.straceTime.
func (b *bench) bdStrace(ctx context.Context, addr, strace string, lookErr error, t *bdTarget) {
	if lookErr != nil {
		for _, p := range t.procs {
			p.sysWhy = "n/a (strace not installed: make bench-deps)"
		}
		return
	}
	type run struct {
		p   *bdProc
		cmd *exec.Cmd
		ch  *lanestest.Proc
		out bytes.Buffer
	}
	var runs []*run
	for _, p := range t.procs {
		args := []string{"-c", "-f", "-q"}
		for _, pid := range p.pids {
			args = append(args, "-p", strconv.Itoa(pid))
		}
		r := &run{p: p, cmd: exec.Command(strace, args...)}
		r.cmd.Stderr = &r.out
		var err error
		if r.ch, err = b.kids.start("strace", r.cmd, syscall.SIGINT, 5*time.Second); err != nil {
			p.sysWhy = "n/a (" + err.Error() + ")"
			continue
		}
		runs = append(runs, r)
	}
	time.Sleep(500 * time.Millisecond) // attached
	tp := closedLoop(ctx, addr, "/", b.opt.conns, b.opt.straceTime)
	for _, r := range runs {
		r.cmd.Process.Signal(syscall.SIGINT)
	}
	for _, r := range runs {
		<-r.ch.Done()
		calls, err := parseStraceC(r.out.String())
		if err != nil {
			r.p.sysWhy = "n/a (" + err.Error() + ")"
			continue
		}
		r.p.sys, r.p.sysReqs = calls, tp.requests
	}
}

var straceRow = regexp.MustCompile(`^\s*[0-9.]+\s+[0-9.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$`)

// parseStraceC reads the calls column of strace -c's table.
func parseStraceC(s string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, line := range strings.Split(s, "\n") {
		m := straceRow.FindStringSubmatch(line)
		if m == nil || m[2] == "total" {
			continue
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		out[m[2]] = n
	}
	if len(out) == 0 && strings.TrimSpace(s) != "" {
		return nil, fmt.Errorf("no strace -c table: %.200q", strings.TrimSpace(s))
	}
	return out, nil
}

// closedLoopN keeps conns connections busy until n requests are answered
// and returns how many were sent and how many failed.
func closedLoopN(ctx context.Context, addr, path string, conns, n int) (int, int) {
	client := &fasthttp.HostClient{Addr: addr, MaxConns: conns, MaxIdemponentCallAttempts: 1, NoDefaultUserAgentHeader: true}
	defer client.CloseIdleConnections()
	var left, errs, sent atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + path)
			for ctx.Err() == nil && left.Add(-1) >= 0 {
				sent.Add(1)
				if err := client.DoTimeout(req, resp, 10*time.Second); err != nil || resp.StatusCode() != 200 {
					errs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(sent.Load()), int(errs.Load())
}

func (b *bench) printBreakdown(w io.Writer, targets []*bdTarget) {
	fmt.Fprintf(w, "12. PER-REQUEST BREAKDOWN: upstream mode, %d-byte responses, Go closed loop, %d connections\n\n", len(originBody), b.opt.conns)
	fmt.Fprintf(w, "   CPU = utime+stime of /proc/PID/stat (10 ms ticks) and bytes = rchar+wchar of /proc/PID/io (every\n")
	fmt.Fprintf(w, "   byte through read/write/send/recv calls, i.e. each copy between user and kernel memory), both over\n")
	fmt.Fprintf(w, "   %d requests after a 1 s warm-up; syscalls from strace -c -f on every process of a row at once for\n", b.opt.breakdownReq)
	fmt.Fprintf(w, "   %s of the same load (traced processes run far slower; the counts per request hold, the CPU does not).\n\n", b.opt.straceTime)
	var t table
	var why []string
	t.row("target / process", "CPU µs/req", "syscalls/req", "top syscalls per request", "allocs/req", "bytes r+w /req")
	for _, tg := range targets {
		if tg.err != nil {
			t.row(tg.name, "failed: "+tg.err.Error())
			continue
		}
		t.row(fmt.Sprintf("%s, %d requests", tg.name, tg.requests), "", "", "", "", "")
		var cpu, sys float64
		var by int64
		for _, p := range tg.procs {
			c := float64(p.ticks) * (1e6 / clockTick) / float64(tg.requests)
			bpr := p.bytes / int64(tg.requests)
			sysCol, top := p.sysWhy, ""
			if p.sys != nil && p.sysReqs > 0 {
				total, kinds := syscallsPer(p.sys, p.sysReqs)
				sysCol, top = fmt.Sprintf("%.1f", total), kinds
				if !strings.HasPrefix(p.role, "origin") {
					sys += total
				}
			}
			alloc := "n/a"
			if p.allocs >= 0 {
				alloc = fmt.Sprintf("%.1f", p.allocs)
			} else if p.allocWhy != "" && p.allocWhy != "n/a" {
				why = append(why, fmt.Sprintf("allocs, %s: %s", p.role, p.allocWhy))
			}
			if p.sys == nil && p.sysWhy != "" {
				sysCol = "n/a"
				why = append(why, fmt.Sprintf("syscalls, %s: %s", p.role, p.sysWhy))
			}
			t.row("  "+p.role, fmt.Sprintf("%.1f", c), sysCol, top, alloc, strconv.FormatInt(bpr, 10))
			if !strings.HasPrefix(p.role, "origin") {
				cpu += c
				by += bpr
			}
		}
		t.row("  = the proxy, origin excluded", fmt.Sprintf("%.1f", cpu), fmt.Sprintf("%.1f", sys), "", "", strconv.FormatInt(by, 10))
	}
	t.write(w, "   ")
	fmt.Fprintln(w)
	seen := map[string]bool{}
	for _, x := range why {
		if !seen[x] {
			seen[x] = true
			fmt.Fprintf(w, "   %s\n", x)
		}
	}
	fmt.Fprintf(w, "   bytes copied: the figure counts user↔kernel copies only; copies inside a process (header\n")
	fmt.Fprintf(w, "   parsing and re-serialising, body buffers) are not visible from outside it.\n\n")
}

// syscallsPer returns the calls per request in all and the top kinds.
func syscallsPer(calls map[string]int64, reqs int) (float64, string) {
	type kv struct {
		k string
		v int64
	}
	var all []kv
	var total int64
	for k, v := range calls {
		all = append(all, kv{k, v})
		total += v
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var parts []string
	for i, x := range all {
		per := float64(x.v) / float64(reqs)
		if i == 5 || per < 0.05 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", x.k, per))
	}
	return float64(total) / float64(reqs), strings.Join(parts, ", ")
}
