package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
)

// Scenarios 2 and 3: what the extra hop costs. One origin serves a small
// fixed body; it is measured directly, through lanes (the built-in worker
// as a reverse proxy) and through nginx and HAProxy, each a process of its own. A
// fourth target has no hop to the origin: lanes with the same handler in
// its workers, which is what nginx in front of the origin compares with
// for an application written on worker.Serve.

// proxyLanesConfig is the lanes config measured: the built-in worker as a
// reverse proxy to origin, in one default lane of the -proxy-workers
// workers that each run up to -proxy-concurrency requests at once.
//
// The defaults, 2 × 64, were the best on 2 CPUs (lanes/nginx, median of 3
// rounds): 1 × 64 0.53, 2 × 64 0.50, 2 × 16 0.46, 4 × 64 0.43. One worker
// is as fast, but a lane of one has no second worker while it restarts;
// more workers only add processes competing for the same CPUs.
func (b *bench) proxyLanesConfig(origin string) string {
	return configHeader + fmt.Sprintf("\napp {\n  upstream = %q\n}\n", "http://"+origin) +
		laneBlock("default", b.opt.proxyWorkers, b.opt.proxyConc, "  max_queue       = 1000\n")
}

// proxyDirectConfig is proxyLanesConfig in direct mode (app.direct): the
// front proxies to the origin itself, the lane's workers × concurrency
// being its slots, and no worker process runs.
func (b *bench) proxyDirectConfig(origin string) string {
	return configHeader + fmt.Sprintf("\napp {\n  upstream = %q\n  direct   = true\n}\n", "http://"+origin) +
		laneBlock("default", b.opt.proxyWorkers, b.opt.proxyConc, "  max_queue       = 1000\n")
}

// appLanesConfig is lanes with the application in its workers: one
// default lane that runs this binary as a custom worker (-app-worker),
// with the proxy lane's workers × concurrency. Every config needs an app
// block; the demo app named here never runs, since the only lane has a
// command of its own.
func (b *bench) appLanesConfig(exe string) string {
	return configHeader + "\napp {\n  demo = true\n}\n" +
		laneBlock("default", b.opt.proxyWorkers, b.opt.proxyConc,
			fmt.Sprintf("  max_queue       = 1000\n  command         = [%q, %q]\n", exe, appWorkerFlag))
}

// The targets of scenarios 2 and 3, in the order they run and print.
const (
	tgDirect      = iota // the origin itself
	tgLanes              // lanes in upstream mode, proxying to the origin
	tgLanesDirect        // lanes in direct upstream mode: the front proxies itself
	tgApp                // lanes with the origin's handler in its workers
	tgBare               // a bare fasthttp proxy: one Go hop, for reference
	tgNginx              // nginx proxying to the origin
	tgHAProxy            // HAProxy proxying to the origin
	numTargets
)

// tpRow is one target's throughput, one figure per round.
type tpRow struct {
	name    string
	rounds  []throughput
	skipped string // why the target was not measured
	err     error
}

// median returns the round with the median req/s.
func (r tpRow) median() throughput {
	if len(r.rounds) == 0 {
		return throughput{}
	}
	s := slices.Clone(r.rounds)
	slices.SortFunc(s, func(a, b throughput) int { return cmp.Compare(a.rps, b.rps) })
	return s[len(s)/2]
}

// spread returns the lowest and highest req/s of the rounds.
func (r tpRow) spread() (lo, hi float64) {
	for i, t := range r.rounds {
		if i == 0 || t.rps < lo {
			lo = t.rps
		}
		hi = max(hi, t.rps)
	}
	return lo, hi
}

// latRow is one target of the added-latency table.
type latRow struct {
	name string
	res  *classResult // nil: not measured
}

// proxyResults is what scenarios 2 and 3 found, indexed by tgDirect…
// tgHAProxy.
type proxyResults struct {
	tp    []tpRow // nil: throughput not run
	lat   []latRow
	notes []string
}

// proxy runs scenarios 2 and 3 against one origin, two lanesd (upstream
// mode, and the app in the worker) and nginx when installed, all started
// up front so that the rounds of scenario 2 can alternate between them: a
// neighbour's burst on a shared machine then costs every target alike.
// throughputLatency measures the targets for scenario 2, 3 or both, as
// -only asks.
func (b *bench) throughputLatency(ctx context.Context) (func(io.Writer), error) {
	rs, err := b.proxy(ctx, b.want["throughput"], b.want["latency"])
	if rs == nil {
		return nil, err
	}
	return func(w io.Writer) { b.printProxy(w, rs) }, err
}

func (b *bench) proxy(ctx context.Context, doTP, doLat bool) (*proxyResults, error) {
	origin, err := b.startOrigin()
	if err != nil {
		return nil, err
	}
	defer origin.Stop()
	if err := probe(origin.addr, "/", len(originBody)); err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	l, err := b.startReady("lanesd (proxy)", b.proxyLanesConfig(origin.addr), lanesdOpts{}, "/", len(originBody))
	if err != nil {
		return nil, err
	}
	defer l.Stop()
	out := &proxyResults{}
	size := fmt.Sprintf("%d workers × concurrency %d", b.opt.proxyWorkers, b.opt.proxyConc)
	rows := make([]tpRow, numTargets)
	addrs := make([]string, numTargets) // "": not measured (see the row)
	rows[tgDirect].name, addrs[tgDirect] = "direct to origin", origin.addr
	rows[tgLanes].name, addrs[tgLanes] = "lanes ("+size+")", l.addr

	// Direct mode: a failure to start costs its row only.
	rows[tgLanesDirect].name = "lanes direct (" + size + " slots)"
	ld, err := b.startReady("lanesd (direct)", b.proxyDirectConfig(origin.addr), lanesdOpts{}, "/", len(originBody))
	if err != nil {
		rows[tgLanesDirect].err = err
	} else {
		defer ld.Stop()
		addrs[tgLanesDirect] = ld.addr
	}

	// The app in the worker: a failure to start costs its row only.
	rows[tgApp].name = "lanes (app in worker, " + size + ")"
	var app *server
	exe, err := selfExe()
	if err == nil {
		app, err = b.startReady("lanesd (app in worker)", b.appLanesConfig(exe), lanesdOpts{}, "/", len(originBody))
	}
	if err != nil {
		rows[tgApp].err = err
	} else {
		defer app.Stop()
		addrs[tgApp] = app.addr
	}

	rows[tgBare].name = "bare fasthttp proxy (one Go hop, reference)"
	bare, err := b.startSelf("bare proxy", bareProxyFlag, origin.addr)
	if err == nil {
		defer bare.Stop()
		err = probe(bare.addr, "/", len(originBody))
	}
	if err != nil {
		rows[tgBare].err = fmt.Errorf("bare proxy: %w", err)
	} else {
		addrs[tgBare] = bare.addr
	}

	rows[tgNginx].name = "nginx"
	if b.nginx == "" {
		rows[tgNginx].skipped = "nginx not installed (apt-get install nginx-light)"
	} else {
		rows[tgNginx].name = nginxVersion(b.nginx) + " (workers auto, upstream keepalive 64)"
		n, err := b.startNginx(b.nginx, origin.addr)
		if err == nil {
			defer n.Stop()
			err = probe(n.addr, "/", len(originBody))
		}
		if err != nil {
			rows[tgNginx].err = fmt.Errorf("nginx: %w", err)
		} else {
			addrs[tgNginx] = n.addr
		}
	}

	rows[tgHAProxy].name = "HAProxy"
	if b.haproxy == "" {
		rows[tgHAProxy].skipped = "HAProxy not installed (apt-get install haproxy)"
	} else {
		rows[tgHAProxy].name = haproxyVersion(b.haproxy) + " (threads auto, http-reuse always)"
		h, err := b.startHAProxy(b.haproxy, origin.addr)
		if err == nil {
			defer h.Stop()
			err = probe(h.addr, "/", len(originBody))
		}
		if err != nil {
			rows[tgHAProxy].err = fmt.Errorf("haproxy: %w", err)
		} else {
			addrs[tgHAProxy] = h.addr
		}
	}

	if doTP {
		out.tp = rows
		for round := 1; round <= b.opt.tpRounds && ctx.Err() == nil; round++ {
			for i, addr := range addrs {
				if addr == "" || out.tp[i].err != nil || ctx.Err() != nil {
					continue
				}
				b.progress("throughput round %d/%d, %s: %s warm-up + %s", round, b.opt.tpRounds, rows[i].name, b.opt.tpWarmup, b.opt.tpMeasure)
				tp, err := b.measureTP(ctx, addr)
				if err != nil {
					out.tp[i].err = err
					continue
				}
				out.tp[i].rounds = append(out.tp[i].rounds, tp)
			}
		}
	}
	if doLat {
		// Rounds alternate between the targets, as in scenario 2: at this
		// light rate a figure is a few hundred µs, and a neighbour's burst
		// during one target's whole run would decide the comparison.
		out.lat = make([]latRow, numTargets)
		rounds := max(1, b.opt.latRounds)
		slice := b.opt.latMeasure / time.Duration(rounds)
		for round := 1; round <= rounds && ctx.Err() == nil; round++ {
			for i, addr := range addrs {
				out.lat[i].name = rows[i].name
				if addr == "" || ctx.Err() != nil {
					continue
				}
				b.progress("added latency round %d/%d, %s: %.0f req/s for %s", round, rounds, rows[i].name, b.opt.latRate, slice)
				res := openLoop{
					addr:    addr,
					classes: []class{{name: rows[i].name, path: "/", rate: b.opt.latRate}},
					warmup:  500 * time.Millisecond,
					measure: slice,
					grace:   2 * time.Second,
				}.run(ctx)
				if out.lat[i].res == nil {
					out.lat[i].res = res[0]
				} else {
					out.lat[i].res.merge(res[0])
				}
			}
		}
	}
	for _, s := range []*server{l, ld, app} {
		if s == nil {
			continue
		}
		s.log.mark()
		s.Stop()
		out.notes = append(out.notes, lanesdNotes(s)...)
	}
	return out, ctx.Err()
}

// measureTP runs the closed-loop generator against addr after a short
// warm-up (connections opened, pools filled, the Go heaps grown).
func (b *bench) measureTP(ctx context.Context, addr string) (throughput, error) {
	if _, err := b.closed(ctx, addr, b.opt.tpWarmup); err != nil {
		return throughput{}, err
	}
	return b.closed(ctx, addr, b.opt.tpMeasure)
}

// closed runs the chosen closed-loop generator.
func (b *bench) closed(ctx context.Context, addr string, d time.Duration) (throughput, error) {
	if b.wrk != nil {
		return b.wrk.run(b, addr, "/", d)
	}
	return closedLoop(ctx, addr, "/", b.opt.conns, d), nil
}

// printProxy writes the tables of scenarios 2 and 3.
func (b *bench) printProxy(w io.Writer, r *proxyResults) {
	if len(r.tp) > 0 {
		fmt.Fprintf(w, "2. PROXY THROUGHPUT: %d-byte responses, closed loop, %d keep-alive connections\n\n", len(originBody), b.opt.conns)
		fmt.Fprintf(w, "   generator: %s; origin: fasthttp, a separate process\n", b.generatorName())
		fmt.Fprintf(w, "   %d rounds, targets alternating, each %s warm-up + %s measured; median round shown\n",
			b.opt.tpRounds, b.opt.tpWarmup, b.opt.tpMeasure)
		fmt.Fprintf(w, "   app in worker: no origin, the lane runs the origin's handler (this binary, %s, on worker.Serve)\n\n", appWorkerFlag)
		var t table
		t.row("target", "req/s", "rounds min–max", "p50", "p99", "errors")
		rps := make([]float64, len(r.tp))
		for i, row := range r.tp {
			switch {
			case row.skipped != "":
				t.row(row.name, row.skipped)
				continue
			case row.err != nil || len(row.rounds) == 0:
				t.row(row.name, "failed (below)")
				continue
			}
			m := row.median()
			lo, hi := row.spread()
			errs := 0
			for _, x := range row.rounds {
				errs += x.errors
			}
			rps[i] = m.rps
			t.row(row.name, fmt.Sprintf("%.0f", m.rps), fmt.Sprintf("%.0f–%.0f", lo, hi), fmtDur(m.p50), fmtDur(m.p99), strconv.Itoa(errs))
		}
		t.write(w, "   ")
		fmt.Fprintf(w, "\n   lanes / direct: %s\n", ratio(rps[tgLanes], rps[tgDirect]))
		if rps[tgNginx] > 0 {
			fmt.Fprintf(w, "   lanes / nginx:  %s   target ≥ 0.80× → %s\n", ratio(rps[tgLanes], rps[tgNginx]), verdict(rps[tgLanes] >= 0.8*rps[tgNginx]))
		} else {
			fmt.Fprintf(w, "   lanes / nginx:  -   (nginx not measured)\n")
		}
		if rps[tgNginx] > 0 && rps[tgLanesDirect] > 0 {
			fmt.Fprintf(w, "   lanes direct / nginx:  %s   target ≥ 0.85× → %s\n", ratio(rps[tgLanesDirect], rps[tgNginx]), verdict(rps[tgLanesDirect] >= 0.85*rps[tgNginx]))
			fmt.Fprintf(w, "   lanes direct / lanes (worker hop):  %s\n", ratio(rps[tgLanesDirect], rps[tgLanes]))
		}
		switch {
		case rps[tgNginx] <= 0:
			fmt.Fprintf(w, "   lanes (app in worker) / nginx: -   (nginx not measured)\n")
		case rps[tgApp] <= 0:
			fmt.Fprintf(w, "   lanes (app in worker) / nginx: -   (app in worker not measured)\n")
		default:
			fmt.Fprintf(w, "   lanes (app in worker) / nginx: %s   target ≥ 1.00× → %s\n", ratio(rps[tgApp], rps[tgNginx]), verdict(rps[tgApp] >= rps[tgNginx]))
		}
		if h := rps[tgHAProxy]; h > 0 {
			fmt.Fprintf(w, "   against HAProxy: lanes %s, lanes direct %s (target ≥ 0.80× → %s), app in worker %s; nginx / HAProxy %s\n",
				ratio(rps[tgLanes], h), ratio(rps[tgLanesDirect], h), verdict(rps[tgLanesDirect] >= 0.8*h), ratio(rps[tgApp], h), ratio(rps[tgNginx], h))
		} else {
			fmt.Fprintf(w, "   against HAProxy: -   (HAProxy not measured)\n")
		}
		if rps[tgBare] > 0 && rps[tgNginx] > 0 {
			fmt.Fprintf(w, "   bare Go hop / nginx: %s   (reference: one fasthttp proxy process, what a Go hop reaches here)\n", ratio(rps[tgBare], rps[tgNginx]))
		}
		for _, row := range r.tp {
			if row.err != nil {
				fmt.Fprintf(w, "   error, %s: %v\n", row.name, row.err)
			}
		}
		fmt.Fprintln(w)
	}
	if len(r.lat) > 0 && r.lat[tgDirect].res != nil {
		fmt.Fprintf(w, "3. ADDED LATENCY: %.0f req/s for %s per target in %d alternating rounds, open loop (Go generator), %d-byte responses\n\n",
			b.opt.latRate, b.opt.latMeasure, max(1, b.opt.latRounds), len(originBody))
		fmt.Fprintf(w, "   latency from send to last byte: at this rate nothing queues in the generator,\n")
		fmt.Fprintf(w, "   whose own timer lateness (see note) would otherwise add to every figure\n\n")
		var t table
		t.row("target", "p50", "p99", "added p50", "added p99", "ok", "errors")
		base := r.lat[tgDirect].res
		for i, row := range r.lat {
			if row.res == nil {
				t.row(row.name, "not measured")
				continue
			}
			add50, add99 := "", ""
			if i != tgDirect {
				add50 = fmtMicros(svcDelta(row.res, base, 50))
				add99 = fmtMicros(svcDelta(row.res, base, 99))
			}
			t.row(row.name, row.res.svc.pctString(50), row.res.svc.pctString(99), add50, add99,
				strconv.Itoa(row.res.ok), strconv.Itoa(row.res.failed+row.res.rejected+row.res.unfinished))
		}
		t.write(w, "   ")
		fmt.Fprintln(w)
		if lanes := r.lat[tgLanes].res; lanes != nil {
			d50 := svcDelta(lanes, base, 50)
			fmt.Fprintf(w, "   added by lanes at p50: %s   target ≤ 100 µs → %s\n", fmtMicros(d50), verdict(d50 <= 100*time.Microsecond))
		}
		app, nginx := r.lat[tgApp].res, r.lat[tgNginx].res
		if d := r.lat[tgLanesDirect].res; d != nil && nginx != nil {
			d50, n50 := svcDelta(d, base, 50), svcDelta(nginx, base, 50)
			fmt.Fprintf(w, "   added by lanes direct at p50: %s, by nginx: %s   target ≤ 1.5× nginx's → %s\n",
				fmtMicros(d50), fmtMicros(n50), verdict(float64(d50) <= 1.5*float64(n50)))
		}
		switch {
		case app == nil:
			fmt.Fprintf(w, "   added by lanes (app in worker) at p50: -   (not measured)\n")
		case nginx == nil:
			fmt.Fprintf(w, "   added by lanes (app in worker) at p50: %s, by nginx: -   (nginx not measured)\n", fmtMicros(svcDelta(app, base, 50)))
		default:
			a50, n50 := svcDelta(app, base, 50), svcDelta(nginx, base, 50)
			fmt.Fprintf(w, "   added by lanes (app in worker) at p50: %s, by nginx: %s   target: ≤ nginx's → %s\n",
				fmtMicros(a50), fmtMicros(n50), verdict(a50 <= n50))
		}
		if h := r.lat[tgHAProxy].res; h != nil {
			fmt.Fprintf(w, "   added by HAProxy at p50: %s\n", fmtMicros(svcDelta(h, base, 50)))
		}
		if bare := r.lat[tgBare].res; bare != nil {
			fmt.Fprintf(w, "   added by one bare Go hop at p50: %s   (reference: lanes makes two such hops in upstream mode, one in app mode)\n",
				fmtMicros(svcDelta(bare, base, 50)))
		}
		late, _ := base.lat.pct(50)
		svc, _ := base.svc.pct(50)
		fmt.Fprintf(w, "   note: the generator's median timer lateness here was %s (direct, from due: %s)\n",
			fmtMicros(late.d-svc.d), fmtDur(late.d))
		fmt.Fprintln(w)
	}
	for _, n := range r.notes {
		fmt.Fprintf(w, "   note: %s\n", n)
	}
}

// svcDelta is a's p-th send-to-answer percentile minus b's.
func svcDelta(a, b *classResult, p float64) time.Duration {
	x, _ := a.svc.pct(p)
	y, _ := b.svc.pct(p)
	return x.d - y.d
}

func fmtMicros(d time.Duration) string {
	return fmt.Sprintf("%+d µs", d.Microseconds())
}
