package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Scenario 11, accesslog: throughput with access_log = true vs. false, each
// lanesd logging to a file, rounds alternating (breakdown.go has scenario
// 12, what a request costs).

func (b *bench) accessLog(ctx context.Context) (func(io.Writer), error) {
	origin, err := b.startOrigin()
	if err != nil {
		return nil, err
	}
	defer origin.Stop()
	var rows [2]tpRow
	var servers [2]*server
	for i, on := range []bool{false, true} {
		cfg := b.proxyLanesConfig(origin.addr)
		if on {
			cfg = strings.Replace(cfg, "access_log = false", "access_log = true", 1)
		}
		name := fmt.Sprintf("lanes, access_log = %v", on)
		l, err := b.startReady("lanesd ("+name+")", cfg, lanesdOpts{logFile: true}, "/", len(originBody))
		if err != nil {
			return nil, err
		}
		defer l.Stop()
		rows[i].name, servers[i] = name, l
	}
	for round := 1; round <= b.opt.tpRounds && ctx.Err() == nil; round++ {
		for i, l := range servers {
			b.progress("access log round %d/%d, %s: %s warm-up + %s", round, b.opt.tpRounds, rows[i].name, b.opt.tpWarmup, b.opt.tpMeasure)
			tp, err := b.measureTP(ctx, l.addr)
			if err != nil {
				return nil, err
			}
			rows[i].rounds = append(rows[i].rounds, tp)
		}
	}
	for _, l := range servers {
		l.log.mark()
		l.catchUp()
	}
	return func(w io.Writer) {
		fmt.Fprintf(w, "11. ACCESS LOG COST: upstream mode, %d-byte responses, %d keep-alive connections\n\n", len(originBody), b.opt.conns)
		fmt.Fprintf(w, "   generator: %s; each lanesd (%d workers × concurrency %d) logs to a file;\n", b.generatorName(), b.opt.proxyWorkers, b.opt.proxyConc)
		fmt.Fprintf(w, "   %d rounds alternating, each %s warm-up + %s measured; median round\n\n", b.opt.tpRounds, b.opt.tpWarmup, b.opt.tpMeasure)
		var t table
		t.row("target", "req/s", "rounds min–max", "p50", "p99", "errors")
		for _, r := range rows {
			m := r.median()
			lo, hi := r.spread()
			errs := 0
			for _, x := range r.rounds {
				errs += x.errors
			}
			t.row(r.name, fmt.Sprintf("%.0f", m.rps), fmt.Sprintf("%.0f–%.0f", lo, hi), fmtDur(m.p50), fmtDur(m.p99), strconv.Itoa(errs))
		}
		t.write(w, "   ")
		off, on := rows[0].median().rps, rows[1].median().rps
		cost := 0.0
		if off > 0 {
			cost = 1 - on/off
		}
		fmt.Fprintf(w, "\n   access_log on / off: %s; cost %.1f%% of throughput; target ≤ 10%% → %s\n", ratio(on, off), 100*cost, verdict(off > 0 && cost <= 0.10))
		for _, l := range servers {
			for _, n := range lanesdNotes(l) {
				fmt.Fprintf(w, "   note: %s\n", n)
			}
		}
		fmt.Fprintln(w)
	}, ctx.Err()
}
