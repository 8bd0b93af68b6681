package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Scenario 17, soak: a mixed load for minutes — fast pages, slow pages in
// their own lane, requests that hang until their lane's hard timeout (504,
// worker killed) and requests that crash their worker (502) — at about
// 100 req/s, with SIGUSR2 (every worker replaced) every 30 s. It reports the
// front's resident size and open descriptors at the start and the end, and
// the share of fast and slow requests that did not get a 2xx: the hangs'
// 504s and the crashes' 502s are expected, nothing else is.

const (
	soakFast  = "/"
	soakSlow  = "/demo/sleep/slow?ms=300"
	soakHang  = "/demo/hang"
	soakCrash = "/demo/crash"
)

// soakResult is one soak run's figures.
type soakResult struct {
	dur                   time.Duration
	drains                int
	startRSS, endRSS      int64
	startFDs, endFDs      int
	classes               []*classResult
	names                 []string
	killed, respawns, tos uint64
}

func (b *bench) soak(ctx context.Context) (func(io.Writer), error) {
	cfg := configHeader + "\napp {\n  demo = true\n}\n" +
		laneBlock("default", 4, 2, "  request_timeout = \"3s\"\n  max_queue = 500\n") +
		laneBlock("slow", 3, 2, "  request_timeout = \"2s\"\n  max_queue = 500\n", "GET /demo/sleep/slow*", "GET /demo/hang")
	l, err := b.startReady("lanesd (soak)", cfg, lanesdOpts{}, soakFast, -1)
	if err != nil {
		return nil, err
	}
	defer l.Stop()
	pid := l.PID
	r := &soakResult{dur: b.opt.soakTime}
	mem, _ := readMem(pid)
	r.startRSS, r.startFDs = mem.rss, fdCount(pid)

	b.progress("soak: %s of fast, slow, hanging and crashing requests at ~100 req/s, SIGUSR2 every 30 s", b.opt.soakTime)
	classes := []class{
		{name: "fast", path: soakFast, rate: 85},
		{name: "slow", path: soakSlow, rate: 12},
		{name: "hang", path: soakHang, rate: 0.5},
		{name: "crash", path: soakCrash, rate: 0.5},
	}
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				if l.Signal(syscall.SIGUSR2) == nil {
					r.drains++
				}
			}
		}
	})
	before, _ := l.status()
	r.classes = openLoop{addr: l.addr, classes: classes, warmup: time.Second, measure: b.opt.soakTime, grace: 5 * time.Second}.run(ctx)
	cancel()
	wg.Wait()
	after, _ := l.status()
	for _, c := range classes {
		r.names = append(r.names, c.name)
	}
	if before != nil && after != nil {
		for i := range after.Lanes {
			r.killed += after.Lanes[i].Killed
			r.respawns += after.Lanes[i].Respawns
			r.tos += after.Lanes[i].Timeouts
			if i < len(before.Lanes) {
				r.killed -= before.Lanes[i].Killed
				r.respawns -= before.Lanes[i].Respawns
				r.tos -= before.Lanes[i].Timeouts
			}
		}
	}
	mem, _ = readMem(pid)
	r.endRSS, r.endFDs = mem.rss, fdCount(pid)
	l.log.mark()
	return r.print(l), ctx.Err()
}

func (r *soakResult) print(l *server) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprintf(w, "17. SOAK: %s at ~100 req/s (fast %s 85/s, slow %s 12/s in lane slow, %s 0.5/s, %s 0.5/s), SIGUSR2 every 30 s\n\n",
			r.dur, soakFast, soakSlow, soakHang, soakCrash)
		var t table
		t.row("requests", "sent", "2xx", "not 2xx", "share not 2xx", "p99 (2xx)")
		unexpected, counted := 0, 0
		for i, c := range r.classes {
			bad := 0
			for _, e := range c.events {
				if !e.ok() {
					bad++
				}
			}
			share := "-"
			if len(c.events) > 0 {
				share = fmt.Sprintf("%.3f %%", 100*float64(bad)/float64(len(c.events)))
			}
			if r.names[i] == "fast" || r.names[i] == "slow" {
				unexpected += bad
				counted += len(c.events)
			}
			t.row(r.names[i], strconv.Itoa(len(c.events)), strconv.Itoa(len(c.events)-bad), strconv.Itoa(bad), share, c.svc.pctString(99))
		}
		t.write(w, "   ")
		fmt.Fprintf(w, "\n   lanesd: %d kills, %d hard timeouts, %d respawns; %d SIGUSR2 drains\n", r.killed, r.tos, r.respawns, r.drains)
		fmt.Fprintf(w, "   front (lanesd) RSS %s → %s, open fds %d → %d\n", fmtMB(r.startRSS), fmtMB(r.endRSS), r.startFDs, r.endFDs)
		share := 0.0
		if counted > 0 {
			share = 100 * float64(unexpected) / float64(counted)
		}
		fmt.Fprintf(w, "   non-2xx beyond the expected (hang 504s, crash 502s): %d of %d fast and slow requests (%.3f %%) → %s\n",
			unexpected, counted, share, verdict(unexpected == 0 && counted > 0))
		for _, n := range lanesdNotes(l) {
			fmt.Fprintf(w, "   note: %s (expected here: kills and crashes)\n", n)
		}
		fmt.Fprintln(w)
	}
}

// fdCount returns how many descriptors process pid has open (-1 unknown).
func fdCount(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}
