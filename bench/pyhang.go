package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Scenario 15, pyhang (gunicorn.go has what the Python scenarios share).

const pyHangHeading = "15. HUNG REQUESTS, PYTHON: /hang every 2 s beside /fast at 20 req/s, request_timeout 3s"

const (
	pyHangTimeout = 3 * time.Second
	pyHangWindow  = 5 * time.Second
	pyHangWithin  = 10 * time.Second // a /fast counts when answered 200 within this
)

var (
	pyHangFast = class{name: "fast", path: "/fast", rate: 20}
	pyHangHang = class{name: "hang", path: "/hang", rate: 0.5}
)

// workerKilled matches lanesd's line for a worker it killed.
var workerKilled = regexp.MustCompile(`worker killed: lane=(\S+)`)

// pyHangRun is one mode of pyhang.
type pyHangRun struct {
	name   string
	setup  string
	fast   *classResult
	hang   *classResult
	kills  map[string]int // by lane
	notes  []string
	failed error
}

func (b *bench) pyHang(ctx context.Context) (func(io.Writer), error) {
	if why := b.pySkip(); why != "" {
		return skipped(pyHangHeading, why), nil
	}
	dir, err := b.wsgiDir()
	if err != nil {
		return nil, err
	}
	gthread := []string{"--workers", "1", "--threads", "4", "-k", "gthread"}
	laneOpts := fmt.Sprintf("  max_queue       = 100\n  queue_timeout   = \"5s\"\n  request_timeout = %q\n", pyHangTimeout.String())

	runs := []*pyHangRun{
		{name: "upstream mode", setup: "one gunicorn --workers 1 --threads 4 -k gthread on a port; lanes' built-in " +
			"workers proxy to it: lane default 2–4 workers × concurrency 4, lane slow 2 × 1 (GET /hang)"},
		{name: "exec mode", setup: "each lane worker one gunicorn --workers 1 --threads 4 -k gthread on its socket: " +
			"lane default 2–4 workers × concurrency 4, lane slow 2 × 1 (GET /hang)"},
	}
	var firstErr error
	for i, r := range runs {
		if ctx.Err() != nil {
			break
		}
		var conf string
		var upstream *server
		if i == 0 {
			upstream, err = b.startGunicorn("gunicorn (upstream, 4 threads)", "", pyHangFast.path, gthread...)
			if err != nil {
				r.failed = err
				firstErr = cmpErr(firstErr, err)
				continue
			}
			conf = configHeader + fmt.Sprintf("\napp {\n  upstream = %q\n}\n", "http://"+upstream.addr) +
				laneRange("default", 2, 4, 4, laneOpts) +
				laneRange("slow", 2, 2, 1, laneOpts, "GET /hang")
		} else {
			argv := b.gunicornArgv(dir, gthread...)
			conf = configHeader +
				laneRange("default", 2, 4, 4, execLane(argv, laneOpts)) +
				laneRange("slow", 2, 2, 1, execLane(argv, laneOpts), "GET /hang")
		}
		var mu sync.Mutex
		r.kills = map[string]int{}
		watch := func(line string) {
			if m := workerKilled.FindStringSubmatch(line); m != nil {
				mu.Lock()
				r.kills[m[1]]++
				mu.Unlock()
			}
		}
		b.progress("pyhang, %s: /hang every 2 s beside /fast at %.0f req/s for %s", r.name, pyHangFast.rate, b.opt.pyHangTime)
		l, err := b.startReady("lanesd (pyhang, "+r.name+")", conf, lanesdOpts{watch: watch}, pyHangFast.path, -1)
		if err != nil {
			if upstream != nil {
				upstream.Stop()
			}
			r.failed = err
			firstErr = cmpErr(firstErr, err)
			continue
		}
		// No warm-up: the first /hang is due at once. Every request is
		// awaited up to 10 s past the window, so each had its 10 s.
		res := openLoop{addr: l.addr, classes: []class{pyHangFast, pyHangHang}, measure: b.opt.pyHangTime,
			grace: pyHangWithin}.run(ctx)
		r.fast, r.hang = res[0], res[1]
		l.log.mark()
		l.Stop()
		r.notes = append(r.notes, lanesdNotes(l)...)
		if upstream != nil {
			upstream.log.mark()
			upstream.Stop()
			r.notes = append(r.notes, gunicornNotes(upstream)...)
		}
	}
	return b.printPyHang(runs), cmpErr(firstErr, ctx.Err())
}

// fastWindows is, per window of the run by when requests were due, the
// share of /fast answered 200 within pyHangWithin, and how many were due.
func fastWindows(r *classResult, total time.Duration) (pct []float64, n []int) {
	k := int((total + pyHangWindow - 1) / pyHangWindow)
	pct, n = make([]float64, k), make([]int, k)
	good := make([]int, k)
	if len(r.events) == 0 {
		return pct, n
	}
	t0 := r.events[0].due
	for _, e := range r.events {
		t0 = minTime(t0, e.due)
	}
	// The first request is due at the start of the window, exactly.
	for _, e := range r.events {
		i := int(e.due.Sub(t0) / pyHangWindow)
		if i >= k {
			i = k - 1
		}
		n[i]++
		if e.status == 200 && e.lat <= pyHangWithin {
			good[i]++
		}
	}
	for i := range pct {
		if n[i] > 0 {
			pct[i] = 100 * float64(good[i]) / float64(n[i])
		}
	}
	return pct, n
}

func (b *bench) printPyHang(runs []*pyHangRun) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprintf(w, "%s\n\n", pyHangHeading)
		fmt.Fprintf(w, "   app: bench/testdata/wsgi_app.py (/hang sleeps an hour), %s; %s run per mode, open loop,\n",
			pythonVersion(b.opt.python), b.opt.pyHangTime)
		fmt.Fprintf(w, "   the first /hang due at once; request_timeout %s and queue_timeout 5s on both lanes.\n", pyHangTimeout)
		for _, r := range runs {
			fmt.Fprintf(w, "   %s: %s\n", r.name, r.setup)
		}
		fmt.Fprintf(w, "\n   %% of /fast answered 200 within %s, per %s window by when each was due:\n\n", pyHangWithin, pyHangWindow)
		var t table
		head := []string{"window"}
		cols := make([][]float64, len(runs))
		counts := make([][]int, len(runs))
		for i, r := range runs {
			head = append(head, r.name)
			if r.fast != nil {
				cols[i], counts[i] = fastWindows(r.fast, b.opt.pyHangTime)
			}
		}
		t.row(head...)
		k := int((b.opt.pyHangTime + pyHangWindow - 1) / pyHangWindow)
		allMet := runs[1].fast != nil
		for wi := 0; wi < k; wi++ {
			from := time.Duration(wi) * pyHangWindow
			to := min(from+pyHangWindow, b.opt.pyHangTime)
			row := []string{fmt.Sprintf("%2.0f–%2.0f s", from.Seconds(), to.Seconds())}
			for i, r := range runs {
				switch {
				case r.fast == nil:
					row = append(row, "-")
				default:
					row = append(row, fmt.Sprintf("%.0f %% of %d", cols[i][wi], counts[i][wi]))
					if i == 1 && cols[i][wi] < 100 {
						allMet = false
					}
				}
			}
			t.row(row...)
		}
		t.write(w, "   ")
		fmt.Fprintln(w)
		t = table{}
		t.row("mode", "/fast 200", "/fast p50", "/fast p99", "/fast other", "/hang 504", "/hang other", "workers killed")
		for _, r := range runs {
			if r.fast == nil {
				t.row(r.name, "not measured")
				continue
			}
			h504, hOther := 0, 0
			for _, e := range r.hang.events {
				if e.status == 504 {
					h504++
				} else {
					hOther++
				}
			}
			var kills []string
			for _, lane := range []string{"default", "slow"} {
				kills = append(kills, fmt.Sprintf("%s %d", lane, r.kills[lane]))
			}
			t.row(r.name, fmt.Sprintf("%d of %d", r.fast.ok, r.fast.sent), r.fast.lat.pctString(50), r.fast.lat.pctString(99),
				strconv.Itoa(r.fast.sent-r.fast.ok), strconv.Itoa(h504), strconv.Itoa(hOther), strings.Join(kills, ", "))
		}
		t.write(w, "   ")
		fmt.Fprintln(w)
		fmt.Fprintf(w, "   target: exec mode answers /fast 100 %% in every window → %s\n", verdict(allMet))
		for _, r := range runs {
			if r.failed != nil {
				fmt.Fprintf(w, "   error, %s: %v\n", r.name, r.failed)
			}
			for _, n := range r.notes {
				fmt.Fprintf(w, "   note, %s: %s\n", r.name, n)
			}
			if r.fast != nil && r.fast.firstErr != "" {
				fmt.Fprintf(w, "   note, %s: /fast: first error: %s\n", r.name, r.fast.firstErr)
			}
		}
		fmt.Fprintln(w)
	}
}
