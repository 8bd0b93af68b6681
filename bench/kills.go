package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// Scenario 7, workers killed under load: GET requests at a constant rate
// (then a closed loop of 32 connections) while workers are SIGKILLed one
// after another, the busiest first. A GET whose worker died before it
// answered is retried once on another worker, so none should fail.

const (
	killPath        = "/demo/sleep?ms=2"
	killWorkers     = 4
	killConcurrency = 8
	killConns       = 32
)

// killPhase is one load generator's run with its kills.
type killPhase struct {
	label    string
	sent     int
	failed   int
	kinds    map[string]int
	lat      *dist
	p99      time.Duration // closed loop: from wrk-like figures
	killed   int
	killErr  error
	retries  uint64 // lanesd's count of retried requests during the phase
	respawns uint64
}

func (b *bench) kills(ctx context.Context) (func(io.Writer), error) {
	cfg := configHeader + "\napp {\n  demo = true\n}\n" +
		laneBlock("default", killWorkers, killConcurrency, "  max_queue       = 1000\n  queue_timeout   = \"10s\"\n")
	l, err := b.startReady("lanesd (kills)", cfg, lanesdOpts{}, killPath, -1)
	if err != nil {
		return nil, err
	}
	defer l.Stop()
	span := time.Duration(b.opt.kills) * b.opt.killEvery
	var phases []*killPhase

	// Open loop.
	b.progress("kills: %.0f GET/s, %d workers SIGKILLed %s apart", b.opt.killRate, b.opt.kills, b.opt.killEvery)
	p := &killPhase{label: fmt.Sprintf("open loop, %.0f GET/s", b.opt.killRate), kinds: map[string]int{}}
	before, _ := l.status()
	var res []*classResult
	var wg sync.WaitGroup
	wg.Go(func() {
		res = openLoop{addr: l.addr, classes: []class{{name: "kills", path: killPath, rate: b.opt.killRate}},
			warmup: time.Second, measure: span + 2*time.Second, grace: 5 * time.Second}.run(ctx)
	})
	p.killed, p.killErr = killSome(ctx, l, b.opt.kills, b.opt.killEvery, 1500*time.Millisecond)
	wg.Wait()
	after, _ := l.status()
	p.account(before, after)
	if len(res) == 1 {
		for _, e := range res[0].events {
			p.sent++
			if !e.ok() {
				p.failed++
				k := e.err
				if k == "" {
					k = "status " + strconv.Itoa(e.status)
				}
				p.kinds[k]++
			}
		}
		p.lat = eventDist(res[0].events, nil)
	}
	phases = append(phases, p)

	// Closed loop.
	if ctx.Err() == nil {
		if _, err := waitReplaced(ctx, l, nil, func(*laneInfo) bool { return true }); err != nil {
			return nil, err
		}
		b.progress("kills: closed loop, %d connections, %d workers SIGKILLed %s apart", killConns, b.opt.kills, b.opt.killEvery)
		p := &killPhase{label: fmt.Sprintf("closed loop, %d connections (Go)", killConns), kinds: map[string]int{}}
		before, _ := l.status()
		var tp throughput
		wg.Go(func() { tp = closedLoop(ctx, l.addr, killPath, killConns, span+3*time.Second) })
		p.killed, p.killErr = killSome(ctx, l, b.opt.kills, b.opt.killEvery, time.Second)
		wg.Wait()
		after, _ := l.status()
		p.account(before, after)
		p.sent, p.failed, p.p99 = tp.requests, tp.errors, tp.p99
		phases = append(phases, p)
	}
	l.log.mark()

	return func(w io.Writer) {
		fmt.Fprintf(w, "7. WORKER KILLS UNDER LOAD: GET %s, lane default %d workers × concurrency %d\n\n", killPath, killWorkers, killConcurrency)
		fmt.Fprintf(w, "   %d workers SIGKILLed %s apart (each time the ready worker with the most requests in flight),\n", b.opt.kills, b.opt.killEvery)
		fmt.Fprintf(w, "   starting 1 s into the load; failed = non-2xx and transport errors\n\n")
		var t table
		t.row("load", "killed", "requests", "failed", "p99", "retried (lanesd)", "respawns")
		for _, p := range phases {
			p99 := "-"
			if p.lat != nil {
				p99 = p.lat.pctString(99)
			} else if p.p99 > 0 {
				p99 = fmtDur(p.p99)
			}
			t.row(p.label, strconv.Itoa(p.killed), strconv.Itoa(p.sent), strconv.Itoa(p.failed), p99,
				strconv.FormatUint(p.retries, 10), strconv.FormatUint(p.respawns, 10))
		}
		t.write(w, "   ")
		fmt.Fprintln(w)
		for _, p := range phases {
			fmt.Fprintf(w, "   target: 0 failed GETs, %s: %d of %d → %s\n", p.label, p.failed, p.sent, verdict(p.failed == 0 && p.sent > 0))
			for k, n := range p.kinds {
				fmt.Fprintf(w, "     %d × %s\n", n, k)
			}
			if p.killErr != nil {
				fmt.Fprintf(w, "   note, %s: %v\n", p.label, p.killErr)
			}
		}
		for _, n := range lanesdNotes(l) {
			fmt.Fprintf(w, "   note: %s (expected here: the workers' exits)\n", n)
		}
		fmt.Fprintln(w)
	}, ctx.Err()
}

// account takes lanesd's retry and respawn counts of the phase.
func (p *killPhase) account(before, after *api.Status) {
	if before == nil || after == nil {
		return
	}
	p.retries = after.Front.Retries - before.Front.Retries
	a, b := after.Lane("default"), before.Lane("default")
	if a != nil && b != nil {
		p.respawns = a.Respawns - b.Respawns
	}
}

// killSome waits first, then SIGKILLs n workers of l's default lane,
// every apart: each time the ready worker with the most requests in flight.
func killSome(ctx context.Context, l *server, n int, every, first time.Duration) (int, error) {
	killed := 0
	next := time.Now().Add(first)
	for tries := 0; killed < n && tries < 4*n; tries++ {
		select {
		case <-ctx.Done():
			return killed, ctx.Err()
		case <-time.After(time.Until(next)):
		}
		next = next.Add(every)
		st, err := l.status()
		if err != nil {
			return killed, err
		}
		ln := st.Lane("default")
		if ln == nil {
			return killed, fmt.Errorf("no lane default")
		}
		pid, most := 0, -1
		for _, w := range ln.Workers {
			if w.State == "ready" && w.Inflight > most {
				pid, most = w.PID, w.Inflight
			}
		}
		if pid == 0 {
			continue // none ready: every worker is being replaced
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return killed, fmt.Errorf("kill %d: %w", pid, err)
		}
		killed++
	}
	return killed, nil
}
