package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// Scenario 4, auto_map: the isolation scenario's three classes with no
// static mapping for the slow URL. auto_map learns it from the first slow
// requests (their run time passes the threshold) and moves it to the slow
// lane; from then on the fast requests should do as well as with the
// static mapping. Unloaded and one pool come from scenario 1 when it ran
// in the same bench, else they run here.

// amThreshold sits between the medium class (200 ms, which shares the fast
// class's path and must stay) and the slow one (1 s).
const amThreshold = 500 * time.Millisecond

func amSetup() isoSetup {
	return isoSetup{"(d)", "auto_map: nothing mapped, slow URL learned", "8 + 8 slow",
		laneBlock("default", 8, 1, isoLane) + laneBlock("slow", 8, 1, isoLane),
		[]class{fastClass, mediumClass, slowClass}}
}

// amResult is what scenario 4 found.
type amResult struct {
	base, pool *isoResult // (a) and (b)
	reused     bool       // base and pool are scenario 1's
	learn      isoResult
	started    time.Time // the learning run's first request was due then
	learned    []api.Mapping
	status     *api.AutoMap
	apiErr     error
}

func (b *bench) autoMap(ctx context.Context) (func(io.Writer), error) {
	r := &amResult{}
	for i := range b.iso {
		switch b.iso[i].setup.key {
		case "(a)":
			r.base = &b.iso[i]
		case "(b)":
			r.pool = &b.iso[i]
		}
	}
	r.reused = r.base != nil && r.pool != nil
	if !r.reused {
		for _, s := range isoSetups()[:2] {
			x, err := b.isoRun(ctx, s, b.opt.isoWarmup, b.opt.isoMeasure, "")
			if err != nil {
				return nil, err
			}
			if s.key == "(a)" {
				r.base = &x
			} else {
				r.pool = &x
			}
		}
	}
	extra := fmt.Sprintf("\nauto_map {\n  threshold    = %q\n  lane         = \"slow\"\n  from         = [\"default\"]\n  forget_after = \"10m\"\n}\n", amThreshold)
	// No warm-up: the run is counted from lanesd's first request, learning
	// included.
	learn, err := b.isoRun(ctx, amSetup(), 0, b.opt.amMeasure, extra, func(l *server) {
		ms, err := l.mappings()
		if err != nil {
			r.apiErr = err
			return
		}
		for _, m := range ms {
			if m.Source == api.SourceAutoMap {
				r.learned = append(r.learned, m)
			}
		}
		if st, err := l.status(); err == nil {
			r.status = st.AutoMap
		}
	})
	r.learn = learn
	if err != nil {
		return nil, err
	}
	return r.print(b), ctx.Err()
}

// learnedAt is when the slow URL was learned (zero if it was not).
func (r *amResult) learnedAt() time.Time {
	for _, m := range r.learned {
		if strings.HasPrefix(slowClass.path, m.Pattern) || strings.HasPrefix(m.Pattern, "/demo/sleep/slow") {
			return m.Added
		}
	}
	return time.Time{}
}

func (r *amResult) print(b *bench) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprintf(w, "4. AUTO_MAP: scenario 1's classes, no static mapping; auto_map learns the slow URL\n\n")
		fmt.Fprintf(w, "   auto_map { threshold = %s, lane = slow, from = [default] }; lanes default 8 + slow 8 (nothing mapped);\n", amThreshold)
		fmt.Fprintf(w, "   the learning run is counted from lanesd's first request (no warm-up), %s, answers awaited 3s past it.\n", b.opt.amMeasure)
		if r.reused {
			fmt.Fprintf(w, "   (a) and (b) are scenario 1's rows, measured in this run.\n\n")
		} else {
			fmt.Fprintf(w, "   (a) and (b) measured here as in scenario 1 (%s warm-up + %s).\n\n", b.opt.isoWarmup, b.opt.isoMeasure)
		}
		at := r.learnedAt()
		fast := r.learn.classes["fast"]
		for _, cr := range r.learn.classes {
			for _, e := range cr.events {
				if r.started.IsZero() || e.due.Before(r.started) {
					r.started = e.due
				}
			}
		}
		var base, pool *dist
		if r.base != nil {
			base = &r.base.classes["fast"].lat
		}
		if r.pool != nil {
			pool = &r.pool.classes["fast"].lat
		}
		var t table
		t.row("setup", "workers", "fast p50", "fast p99", "p99 vs (a)", "p99 vs (b)", "fast requests")
		row := func(label, workers string, d *dist) {
			t.row(label, workers, d.pctString(50), d.pctString(99), distRatio(d, base, 99), distRatio(d, pool, 99), strconv.Itoa(d.n()))
		}
		if base != nil {
			row("(a) unloaded", r.base.setup.workers, base)
		}
		if pool != nil {
			row("(b) one pool", r.pool.setup.workers, pool)
		}
		row("(d) auto_map, whole run", r.learn.setup.workers, eventDist(fast.events, nil))
		var after, half *dist
		if !at.IsZero() {
			after = eventDist(fast.events, func(e event) bool { return !e.due.Before(at) })
			row("(d) auto_map, from learning", r.learn.setup.workers, after)
		}
		mid := r.started.Add(b.opt.amMeasure / 2)
		half = eventDist(fast.events, func(e event) bool { return !e.due.Before(mid) })
		row("(d) auto_map, second half of the run", r.learn.setup.workers, half)
		t.write(w, "   ")

		fmt.Fprintf(w, "\n   every class of (d), whole run:\n\n")
		t = table{}
		t.row("class", "p50", "p99", "sent", "ok", "503", "errors", "unfin")
		for _, c := range r.learn.setup.classes {
			cr := r.learn.classes[c.name]
			t.row(c.name, cr.lat.pctString(50), cr.lat.pctString(99), strconv.Itoa(cr.sent), strconv.Itoa(cr.ok),
				strconv.Itoa(cr.rejected), strconv.Itoa(cr.failed), strconv.Itoa(cr.unfinished))
		}
		t.write(w, "   ")
		fmt.Fprintln(w)

		switch {
		case r.apiErr != nil:
			fmt.Fprintf(w, "   learned mappings: unknown (%v)\n", r.apiErr)
		case len(r.learned) == 0:
			fmt.Fprintf(w, "   learned mappings: none — auto_map did not learn the slow URL\n")
		default:
			for _, m := range r.learned {
				fmt.Fprintf(w, "   learned: %s %s → %s, %s after the first request, %d hits\n",
					m.Method, m.Pattern, m.Lane, m.Added.Sub(r.started).Round(10*time.Millisecond), m.Hits)
			}
		}
		if r.status != nil {
			fmt.Fprintf(w, "   auto_map status: %d entries, learned %d, forgotten %d, evicted %d\n",
				r.status.Entries, r.status.Learned, r.status.Forgotten, r.status.Evicted)
		}
		if base != nil && after != nil {
			x := distFactor(after, base, 99)
			y := distFactor(half, base, 99)
			fmt.Fprintf(w, "   target: after learning, fast p99 ≤ 1.2× unloaded: %s × → %s   (second half: %s × → %s)\n",
				fmtFactor(x), verdict(x > 0 && x <= 1.2), fmtFactor(y), verdict(y > 0 && y <= 1.2))
			fmt.Fprintf(w, "   (until it is learned, slow requests hold default workers, and the fast and medium requests queued\n")
			fmt.Fprintf(w, "   behind them take a while to clear: \"from learning\" includes that backlog)\n")
		}
		for _, n := range r.learn.notes {
			fmt.Fprintf(w, "   note: %s\n", n)
		}
		for _, c := range r.learn.setup.classes {
			if e := r.learn.classes[c.name].firstErr; e != "" {
				fmt.Fprintf(w, "   note (d): %s: first error: %s\n", c.name, e)
			}
		}
		fmt.Fprintln(w)
	}
}

// distFactor is a's p-th percentile over b's, 0 when either is missing.
func distFactor(a, b *dist, p float64) float64 {
	if a == nil || b == nil {
		return 0
	}
	x, ok1 := a.pct(p)
	y, ok2 := b.pct(p)
	if !ok1 || !ok2 || y.d <= 0 {
		return 0
	}
	return float64(x.d) / float64(y.d)
}

// distRatio formats distFactor, "≥" when a's percentile is censored.
func distRatio(a, b *dist, p float64) string {
	x := distFactor(a, b, p)
	if x == 0 {
		return "-"
	}
	if s, _ := a.pct(p); s.censored {
		return "≥" + ratio(x, 1)
	}
	return ratio(x, 1)
}
