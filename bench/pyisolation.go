package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Scenario 14, pyisolation (gunicorn.go has what the Python scenarios
// share).

const pyIsoHeading = "14. ISOLATION, PYTHON: the NaviServer table (times ÷ 5) against a WSGI app under gunicorn"

// pyIsoSetup is one target of pyisolation and the load sent to it.
type pyIsoSetup struct {
	key, label, workers string
	lanes               bool // lanesd with exec workers; else one gunicorn pool
	classes             []class
}

func (b *bench) pyIsolation(ctx context.Context) (func(io.Writer), error) {
	if why := b.pySkip(); why != "" {
		return skipped(pyIsoHeading, why), nil
	}
	dir, err := b.wsgiDir()
	if err != nil {
		return nil, err
	}
	all := []class{pyFastClass, pyMediumClass, pySlowClass}
	setups := []pyIsoSetup{
		{"(a)", "gunicorn alone, unloaded: fast only", "8 sync", false, []class{pyFastClass}},
		{"(b)", "gunicorn alone, one pool: all three", "8 sync", false, all},
		{"(c)", "lanes exec, unloaded: fast only", "6 + 2 slow", true, []class{pyFastClass}},
		{"(d)", "lanes exec, slow URL in its own lane", "6 + 2 slow", true, all},
	}
	worker := execLane(b.gunicornArgv(dir, "--workers", "1"), isoLane)
	lanesConf := configHeader +
		laneBlock("default", 6, 1, worker) +
		laneBlock("slow", 2, 1, worker, "GET /sleep/slow*")

	var rs []isoResult
	var notes []string
	for _, s := range setups {
		if ctx.Err() != nil {
			break
		}
		b.progress("pyisolation %s %s: %s warm-up + %s measured", s.key, s.label, b.opt.isoWarmup, b.opt.pyIsoMeasure)
		var srv *server
		if s.lanes {
			srv, err = b.startReady("lanesd "+s.key+" exec gunicorn", lanesConf, lanesdOpts{}, pyFastClass.path, -1)
		} else {
			srv, err = b.startGunicorn("gunicorn "+s.key+" --workers 8", "", pyFastClass.path, "--workers", "8")
		}
		if err != nil {
			return b.printPyIso(rs, notes), err
		}
		res := openLoop{addr: srv.addr, classes: s.classes, warmup: b.opt.isoWarmup, measure: b.opt.pyIsoMeasure,
			grace: 3 * time.Second}.run(ctx)
		srv.log.mark()
		srv.Stop()
		r := isoResult{setup: isoSetup{key: s.key, label: s.label, workers: s.workers, classes: s.classes}, classes: map[string]*classResult{}}
		for i, c := range s.classes {
			r.classes[c.name] = res[i]
		}
		if s.lanes {
			r.notes = lanesdNotes(srv)
		} else {
			r.notes = gunicornNotes(srv)
		}
		rs = append(rs, r)
	}
	return b.printPyIso(rs, notes), ctx.Err()
}

func (b *bench) printPyIso(rs []isoResult, notes []string) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprintf(w, "%s\n\n", pyIsoHeading)
		fmt.Fprintf(w, "   classes (open loop, constant arrival; latency counted from when each request was due):\n")
		for _, c := range []class{pyFastClass, pyMediumClass, pySlowClass} {
			fmt.Fprintf(w, "     %-7s GET %-22s %5.1f req/s\n", c.name, c.path, c.rate)
		}
		fmt.Fprintf(w, "   app: bench/testdata/wsgi_app.py, %s; gunicorn alone: --workers 8 (sync) on a port, as a\n", pythonVersion(b.opt.python))
		fmt.Fprintf(w, "   gunicorn site runs today; lanes: exec lane workers, each one gunicorn --workers 1 (sync) on the\n")
		fmt.Fprintf(w, "   socket lanes hands it, concurrency 1, ready = \"notify\", GET /sleep/slow* mapped to lane \"slow\".\n")
		fmt.Fprintf(w, "   Per setup a fresh server, %s warm-up, %s measured, answers awaited 3s past the window.\n\n",
			b.opt.isoWarmup, b.opt.pyIsoMeasure)
		find := func(key string) *classResult {
			for _, r := range rs {
				if r.setup.key == key {
					return r.classes["fast"]
				}
			}
			return nil
		}
		gBase, lBase := find("(a)"), find("(c)")
		var t table
		t.row("setup", "workers", "fast p50", "fast p99", "p99 vs own unloaded", "p99 vs (a)")
		for _, r := range rs {
			f := r.classes["fast"]
			own := gBase
			if r.setup.key == "(c)" || r.setup.key == "(d)" {
				own = lBase
			}
			t.row(r.setup.key+" "+r.setup.label, r.setup.workers, f.lat.pctString(50), f.lat.pctString(99),
				pctRatio(f, own, 99), pctRatio(f, gBase, 99))
		}
		t.write(w, "   ")
		fmt.Fprintf(w, "\n   every class (unfin = no answer by the cut-off, counted at its wait so far, shown as ≥):\n\n")
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
		if pool, lanes := find("(b)"), find("(d)"); gBase != nil && lBase != nil && pool != nil && lanes != nil {
			x := pctFactor(lanes, lBase, 99)
			fmt.Fprintf(w, "   lanes' fast p99 / unloaded (d)/(c): %s×   target ≤ 1.5× → %s\n", fmtFactor(x), verdict(x > 0 && x <= 1.5))
			fmt.Fprintf(w, "   lanes' fast p99 / gunicorn alone unloaded (d)/(a): %s×\n", fmtFactor(pctFactor(lanes, gBase, 99)))
			fmt.Fprintf(w, "   one pool's fast p99 / unloaded (b)/(a): %s× (%s, far worse: %s)\n",
				fmtFactor(pctFactor(pool, gBase, 99)), pctRatio(pool, gBase, 99), verdict(pctFactor(pool, gBase, 99) >= 10))
			fmt.Fprintf(w, "   one pool's fast p99 / lanes' (b)/(d): %s\n", pctRatio(pool, lanes, 99))
			busy := pyFastClass.rate*0.002 + pyMediumClass.rate*0.2
			fmt.Fprintf(w, "   (d)'s default lane carries fast and medium: %.1f of its 6 workers busy on average (%.0f %%)\n", busy, 100*busy/6)
		}
		for _, r := range rs {
			for _, n := range r.notes {
				fmt.Fprintf(w, "   note %s: %s\n", r.setup.key, n)
			}
			for _, c := range r.setup.classes {
				if e := r.classes[c.name].firstErr; e != "" {
					fmt.Fprintf(w, "   note %s: %s: first error: %s\n", r.setup.key, c.name, e)
				}
			}
		}
		for _, n := range notes {
			fmt.Fprintf(w, "   note: %s\n", n)
		}
		fmt.Fprintln(w)
	}
}
