package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Scenario 6, drain and reload under constant load: an open-loop stream of
// short requests, during which an operator drains the default lane (POST
// /api/lanes/default/drain) and then reloads a config whose lane has a
// changed worker setting (concurrency 1 → 2, which replaces every worker).
// Nothing may fail, and the change should not show in the latency.

const (
	ctlPath    = "/demo/sleep?ms=5"
	ctlWorkers = 4
	ctlLimit   = 60 * time.Second // longest a drain or reload may take
	ctlAfter   = time.Second      // counted in the change's window after it is done
)

func ctlConfig(concurrency int) string {
	return configHeader + "\napp {\n  demo = true\n}\n" +
		laneBlock("default", ctlWorkers, concurrency, "  max_queue       = 1000\n  queue_timeout   = \"10s\"\n")
}

// window is a named stretch of a run, by when requests were due.
type window struct {
	name     string
	from, to time.Time
}

// ctlResult is what scenario 6 found.
type ctlResult struct {
	events               []event
	windows              []window
	drainPIDs, reloadPID bool // every worker pid was new after the drain, after the reload
	changed              []string
	notes                []string
}

func (b *bench) drainReload(ctx context.Context) (func(io.Writer), error) {
	l, err := b.startReady("lanesd (drain)", ctlConfig(1), lanesdOpts{}, ctlPath, -1)
	if err != nil {
		return nil, err
	}
	defer l.Stop()
	b.progress("drain and reload under %.0f req/s: %s before, drain, %s, reload, %s after", b.opt.ctlRate, b.opt.ctlPhase, b.opt.ctlPhase, b.opt.ctlPhase)
	r := &ctlResult{}
	loopCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var (
		res  []*classResult
		load sync.WaitGroup
	)
	warmup := time.Second
	t0 := time.Now()
	load.Go(func() {
		res = openLoop{addr: l.addr, classes: []class{{name: "ctl", path: ctlPath, rate: b.opt.ctlRate}},
			warmup: warmup, measure: time.Hour, grace: 5 * time.Second}.run(loopCtx)
	})
	ctlErr := b.ctlSequence(ctx, l, r, t0.Add(warmup))
	stopLoad()
	load.Wait()
	l.log.mark()
	if len(res) == 1 {
		r.events = res[0].events
	}
	r.notes = append(r.notes, lanesdNotes(l)...)
	return r.print(b), ctlErr
}

// ctlSequence drains, then reloads, each between phases of plain load, and
// records the windows.
func (b *bench) ctlSequence(ctx context.Context, l *server, r *ctlResult, from time.Time) error {
	sleep := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	if err := sleep(time.Until(from.Add(b.opt.ctlPhase))); err != nil {
		return err
	}
	st, err := l.status()
	if err != nil {
		return err
	}
	old := workerPIDs(st, "default")
	start := time.Now()
	r.windows = append(r.windows, window{"before", from, start})
	if err := l.adminCall("POST", "/api/lanes/default/drain", nil, nil); err != nil {
		return err
	}
	newPIDs, err := waitReplaced(ctx, l, old, func(*laneInfo) bool { return true })
	// The change's window runs until a second after the last new worker
	// is ready: the old ones are still leaving, the new ones warming up.
	end := time.Now().Add(ctlAfter)
	r.windows = append(r.windows, window{"drain, until done + 1s", start, end})
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	r.drainPIDs = true
	if err := sleep(time.Until(end) + b.opt.ctlPhase); err != nil {
		return err
	}
	r.windows = append(r.windows, window{"between", end, time.Now()})

	if err := os.WriteFile(l.conf, []byte(ctlConfig(2)), 0o600); err != nil {
		return err
	}
	start = time.Now()
	if err := l.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	_, err = waitReplaced(ctx, l, newPIDs, func(li *laneInfo) bool { return li.concurrency == 2 })
	end = time.Now().Add(ctlAfter)
	r.windows = append(r.windows, window{"reload, until done + 1s", start, end})
	if st, serr := l.status(); serr == nil && st.Reload != nil {
		r.changed = st.Reload.Changed
		if !st.Reload.OK {
			r.notes = append(r.notes, "reload refused: "+st.Reload.Error)
		}
	}
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	r.reloadPID = true
	if err := sleep(time.Until(end) + b.opt.ctlPhase); err != nil {
		return err
	}
	r.windows = append(r.windows, window{"after", end, time.Now()})
	return nil
}

// laneInfo is what waitReplaced looks at besides the pids.
type laneInfo struct {
	concurrency int
	draining    bool
}

// waitReplaced waits until the default lane is not draining, has none of
// the old pids, has its ctlWorkers workers ready, and done holds; it
// returns the new pids.
func waitReplaced(ctx context.Context, l *server, old []int, done func(*laneInfo) bool) ([]int, error) {
	deadline := time.Now().Add(ctlLimit)
	for {
		st, err := l.status()
		if err != nil {
			return nil, err
		}
		if ln := st.Lane("default"); ln != nil {
			li := &laneInfo{concurrency: ln.Concurrency, draining: ln.Draining}
			pids := workerPIDs(st, "default")
			ready := 0
			stale := false
			for _, w := range ln.Workers {
				if w.State == "ready" {
					ready++
				}
				if slices.Contains(old, w.PID) && w.State != "dead" {
					stale = true
				}
			}
			if !li.draining && !stale && ready >= ctlWorkers && done(li) {
				return pids, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("workers not all replaced after %s", ctlLimit)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *ctlResult) print(b *bench) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprintf(w, "6. DRAIN AND RELOAD UNDER LOAD: %.0f req/s of GET %s, open loop, lane default %d × concurrency 1\n\n",
			b.opt.ctlRate, ctlPath, ctlWorkers)
		fmt.Fprintf(w, "   %s of load; POST /api/lanes/default/drain, until every worker is new; %s; SIGHUP with the\n", b.opt.ctlPhase, b.opt.ctlPhase)
		fmt.Fprintf(w, "   lane's concurrency changed 1 → 2 (a worker setting: every worker replaced); %s more. Windows by when\n", b.opt.ctlPhase)
		fmt.Fprintf(w, "   each request was due; failed = non-2xx, transport errors and unanswered.\n\n")
		var t table
		t.row("window", "length", "sent", "failed", "p50", "p99", "p99 vs before")
		var before *dist
		var total, failed int
		for _, win := range r.windows {
			in := func(e event) bool { return !e.due.Before(win.from) && e.due.Before(win.to) }
			sent, bad := 0, 0
			for _, e := range r.events {
				if in(e) {
					sent++
					if !e.ok() {
						bad++
					}
				}
			}
			d := eventDist(r.events, in)
			if win.name == "before" {
				before = d
			}
			t.row(win.name, win.to.Sub(win.from).Round(10*time.Millisecond).String(), strconv.Itoa(sent), strconv.Itoa(bad),
				d.pctString(50), d.pctString(99), distRatio(d, before, 99))
		}
		for _, e := range r.events {
			total++
			if !e.ok() {
				failed++
			}
		}
		all := eventDist(r.events, nil)
		t.row("whole run", "", strconv.Itoa(total), strconv.Itoa(failed), all.pctString(50), all.pctString(99), distRatio(all, before, 99))
		t.write(w, "   ")
		fmt.Fprintf(w, "\n   target: 0 failed → %d failed of %d → %s\n", failed, total, verdict(failed == 0 && total > 0))
		fmt.Fprintf(w, "   every worker pid new after the drain: %s; after the reload: %s\n", yesNo(r.drainPIDs), yesNo(r.reloadPID))
		if len(r.changed) > 0 {
			fmt.Fprintf(w, "   the reload changed: %s\n", strings.Join(r.changed, "; "))
		}
		firsts := map[string]int{}
		for _, e := range r.events {
			if !e.ok() {
				k := e.err
				if k == "" {
					k = "status " + strconv.Itoa(e.status)
				}
				firsts[k]++
			}
		}
		for k, n := range firsts {
			fmt.Fprintf(w, "   failures: %d × %s\n", n, k)
		}
		for _, n := range r.notes {
			fmt.Fprintf(w, "   note: %s\n", n)
		}
		fmt.Fprintln(w)
	}
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}
