package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Scenario 1, isolation: NaviServer's table of fast, medium and slow
// requests sharing one server, with every time divided by 5. Fast requests
// alone, then next to the others in one pool of workers, then with the
// slow URL in a lane of its own.

// The request classes. The slow class has a path of its own so that a
// lane can take it; the medium class shares the fast class's path, as a
// slow-ish page of the same application would, and stays in its lane.
var (
	fastClass   = class{name: "fast", path: "/demo/sleep?ms=2", rate: 167}
	mediumClass = class{name: "medium", path: "/demo/sleep?ms=200", rate: 25}
	slowClass   = class{name: "slow", path: "/demo/sleep/slow?ms=1000", rate: 8.3}
)

// isoLane is what every isolation lane has besides its size: queues long
// and patient enough that overload shows as waiting, not as 503s.
const isoLane = `  max_queue       = 10000
  queue_timeout   = "30s"
  request_timeout = "60s"
`

// isoSetup is one lanesd configuration and the load sent to it.
type isoSetup struct {
	key     string // "(a)", "(b)", "(c1)", "(c2)"
	label   string
	workers string // as shown: "8", "6 + 2"
	lanes   string // the config's lane blocks
	classes []class
}

func isoSetups() []isoSetup {
	all := []class{fastClass, mediumClass, slowClass}
	return []isoSetup{
		{"(a)", "unloaded: fast only, one lane", "8",
			laneBlock("default", 8, 1, isoLane), []class{fastClass}},
		{"(b)", "one pool: all three classes", "8",
			laneBlock("default", 8, 1, isoLane), all},
		{"(c1)", "lanes, same total", "6 + 2 slow",
			laneBlock("default", 6, 1, isoLane) + laneBlock("slow", 2, 1, isoLane, "GET /demo/sleep/slow*"), all},
		{"(c2)", "lanes, slow lane sized", "8 + 8 slow",
			laneBlock("default", 8, 1, isoLane) + laneBlock("slow", 8, 1, isoLane, "GET /demo/sleep/slow*"), all},
	}
}

// isoResult is one setup's outcome, one classResult per class of the
// setup (by name).
type isoResult struct {
	setup   isoSetup
	classes map[string]*classResult
	notes   []string
}

// isolation runs every setup, each on a fresh lanesd.
// isolationScenario runs isolation and keeps its results for automap.
func (b *bench) isolationScenario(ctx context.Context) (func(io.Writer), error) {
	rs, err := b.isolation(ctx)
	b.iso = rs
	return func(w io.Writer) { b.printIsolation(w, rs) }, err
}

func (b *bench) isolation(ctx context.Context) ([]isoResult, error) {
	var out []isoResult
	for _, s := range isoSetups() {
		r, err := b.isoRun(ctx, s, b.opt.isoWarmup, b.opt.isoMeasure, "")
		if err != nil {
			return out, err
		}
		out = append(out, r)
		if err := ctx.Err(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// isoRun runs one setup on a fresh lanesd, its config the demo app, the
// setup's lanes and extra. before, when set, runs against that lanesd
// once the load is over and before it stops.
func (b *bench) isoRun(ctx context.Context, s isoSetup, warmup, measure time.Duration, extra string,
	before ...func(l *server)) (isoResult, error) {
	b.progress("%s %s: %s warm-up + %s measured", s.key, s.label, warmup, measure)
	l, err := b.startReady("lanesd "+s.key+" "+shortLabel(s.label), configHeader+"\napp {\n  demo = true\n}\n"+s.lanes+extra, lanesdOpts{}, fastClass.path, -1)
	if err != nil {
		return isoResult{}, err
	}
	res := openLoop{
		addr:    l.addr,
		classes: s.classes,
		warmup:  warmup,
		measure: measure,
		// Long enough for a slow request due at the very end, short
		// enough that an overloaded setup's backlog does not hold up
		// the bench: what is left counts as unfinished.
		grace: 3 * time.Second,
	}.run(ctx)
	// What lanesd logs while it stops (requests cut off at the end of an
	// overloaded setup) is expected; what it logged under load is a
	// finding.
	l.log.mark()
	for _, f := range before {
		f(l)
	}
	l.Stop()
	r := isoResult{setup: s, classes: map[string]*classResult{}}
	for i, c := range s.classes {
		r.classes[c.name] = res[i]
	}
	r.notes = append(r.notes, lanesdNotes(l)...)
	return r, nil
}

// lanesdNotes says what an operator would want to know from a lanesd's own
// log: warnings, errors, and whether it had to be killed.
func lanesdNotes(l *server) []string {
	var notes []string
	if w, e, last := l.log.counts(); w+e > 0 {
		notes = append(notes, fmt.Sprintf("%s logged %d warnings and %d errors under load; last: %s", l.Name, w, e, last))
	}
	if l.Forced() {
		notes = append(notes, fmt.Sprintf("%s did not stop within %s of SIGTERM and was killed", l.Name, l.Grace()))
	}
	return notes
}

// printIsolation writes scenario 1's tables.
func (b *bench) printIsolation(w io.Writer, rs []isoResult) {
	fmt.Fprintf(w, "1. ISOLATION: fast requests next to slow ones (NaviServer's table, times ÷ 5)\n\n")
	fmt.Fprintf(w, "   classes (open loop, constant arrival; latency counted from when each request was due):\n")
	for _, c := range []class{fastClass, mediumClass, slowClass} {
		fmt.Fprintf(w, "     %-7s GET %-26s %5.1f req/s\n", c.name, c.path, c.rate)
	}
	fmt.Fprintf(w, "   built-in demo app, concurrency 1 per worker, max_queue 10000, queue_timeout 30s;\n")
	fmt.Fprintf(w, "   per setup a fresh lanesd, %s warm-up, %s measured, answers awaited 3s past the window.\n\n",
		b.opt.isoWarmup, b.opt.isoMeasure)

	var base *classResult
	for _, r := range rs {
		if r.setup.key == "(a)" {
			base = r.classes["fast"]
		}
	}
	var t table
	t.row("setup", "workers", "fast p50", "fast p99", "p50 vs (a)", "p99 vs (a)")
	for _, r := range rs {
		f := r.classes["fast"]
		t.row(r.setup.key+" "+r.setup.label, r.setup.workers,
			f.lat.pctString(50), f.lat.pctString(99), pctRatio(f, base, 50), pctRatio(f, base, 99))
	}
	t.write(w, "   ")

	fmt.Fprintf(w, "\n   every class (requests due in the window; unfin = no answer by the cut-off,\n")
	fmt.Fprintf(w, "   counted in the percentiles at its wait so far, shown as ≥):\n\n")
	t = table{}
	t.row("setup", "class", "p50", "p99", "sent", "ok", "503", "errors", "unfin")
	for _, r := range rs {
		for _, c := range r.setup.classes {
			cr := r.classes[c.name]
			t.row(r.setup.key+" "+shortLabel(r.setup.label), c.name, cr.lat.pctString(50), cr.lat.pctString(99),
				strconv.Itoa(cr.sent), strconv.Itoa(cr.ok), strconv.Itoa(cr.rejected), strconv.Itoa(cr.failed), strconv.Itoa(cr.unfinished))
		}
	}
	t.write(w, "   ")

	fmt.Fprintln(w)
	if base != nil {
		for _, r := range rs {
			f := r.classes["fast"]
			x := pctFactor(f, base, 99)
			switch {
			case r.setup.key == "(b)":
				fmt.Fprintf(w, "   target: one pool degrades fast p99 by ≥ 10×: %s × → %s\n", fmtFactor(x), verdict(x >= 10))
			case strings.HasPrefix(r.setup.key, "(c"):
				fmt.Fprintf(w, "   target: %s keeps fast p99 within 2× of unloaded: %s × → %s\n", r.setup.label, fmtFactor(x), verdict(x > 0 && x <= 2))
			}
		}
	}
	for _, r := range rs {
		for _, n := range r.notes {
			fmt.Fprintf(w, "   note: %s\n", n)
		}
		for _, c := range r.setup.classes {
			if e := r.classes[c.name].firstErr; e != "" {
				fmt.Fprintf(w, "   note %s: %s: first error: %s\n", r.setup.key, c.name, e)
			}
		}
	}
	fmt.Fprintln(w)
}

func shortLabel(s string) string {
	s, _, _ = strings.Cut(s, ":")
	return s
}

// pctFactor is r's p-th latency percentile over base's, 0 when either is
// missing.
func pctFactor(r, base *classResult, p float64) float64 {
	if r == nil || base == nil {
		return 0
	}
	return distFactor(&r.lat, &base.lat, p)
}

// pctRatio formats pctFactor, "≥" when r's percentile is censored.
func pctRatio(r, base *classResult, p float64) string {
	if r == nil || base == nil {
		return "-"
	}
	return distRatio(&r.lat, &base.lat, p)
}

func fmtFactor(x float64) string {
	if x >= 10 {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.2f", x)
}
