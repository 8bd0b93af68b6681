package main

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Scenarios 14 to 16: a Python WSGI app (testdata/wsgi_app.py) under
// gunicorn, as a gunicorn site runs today, against the same app run by
// lanes as exec lane workers (one gunicorn, --workers 1, per lane worker,
// handed its socket by socket activation):
//
//	14. pyisolation: the NaviServer table (times ÷ 5) against one gunicorn
//	    pool of 8 sync workers, and against lanes with the slow URL in a
//	    lane of its own (6 + 2 gunicorns);
//	15. pyhang: a 4-thread gunicorn behind lanes in upstream mode, where a
//	    request that hangs holds a thread for good although lanes answers
//	    504, against exec mode, where the 504 kills the gunicorn that ran it;
//	16. pythroughput: a trivial endpoint, nginx in front of N sync
//	    workers against lanes with N gunicorn lane workers.
//
// Each is skipped, with the reason, when gunicorn does not import under
// -python (Debian: apt-get install python3-gunicorn); pythroughput also
// when nginx is missing.

//go:embed testdata/wsgi_app.py
var wsgiApp []byte

// The request classes of pyisolation: isolation.go's, on the WSGI app's
// paths.
var (
	pyFastClass   = class{name: "fast", path: "/sleep?ms=2", rate: fastClass.rate}
	pyMediumClass = class{name: "medium", path: "/sleep?ms=200", rate: mediumClass.rate}
	pySlowClass   = class{name: "slow", path: "/sleep/slow?ms=1000", rate: slowClass.rate}
)

// pySkip says why the Python scenarios cannot run, "" when they can.
func (b *bench) pySkip() string {
	out, err := exec.Command(b.opt.python, "-c", "import gunicorn").CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			msg = msg[i+1:]
		}
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Sprintf("skipped: %s -c 'import gunicorn' failed (%s); apt-get install python3-gunicorn", b.opt.python, msg)
	}
	return ""
}

// skipped prints a scenario's heading and why it did not run.
func skipped(heading, why string) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprintf(w, "%s\n\n   %s\n\n", heading, why)
	}
}

// wsgiDir writes the WSGI app into the bench's directory, once, and
// returns the directory gunicorn is to chdir to.
func (b *bench) wsgiDir() (string, error) {
	dir := filepath.Join(b.tmp, "wsgi")
	if _, err := os.Stat(filepath.Join(dir, "wsgi_app.py")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "wsgi_app.py"), wsgiApp, 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// gunicornArgv is the command line of one gunicorn serving the WSGI app
// from dir with the given options. A graceful stop waits 2 s for requests
// in flight (gunicorn's default is 30 s: a hung request would hold the
// bench); only warnings and errors are logged.
func (b *bench) gunicornArgv(dir string, opts ...string) []string {
	argv := []string{b.opt.python, "-m", "gunicorn", "--chdir", dir, "--graceful-timeout", "2", "--log-level", "warning"}
	argv = append(argv, opts...)
	return append(argv, "wsgi_app:app")
}

// hclList writes a list of strings in HCL.
func hclList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// laneRange is laneBlock with min and max workers apart.
func laneRange(name string, minW, maxW, concurrency int, extra string, maps ...string) string {
	s := laneBlock(name, maxW, concurrency, extra, maps...)
	return strings.Replace(s, fmt.Sprintf("min_workers     = %d\n", maxW), fmt.Sprintf("min_workers     = %d\n", minW), 1)
}

// execLane is what a lane running argv as exec workers has besides its
// size: gunicorn says READY=1 once its arbiter listens.
func execLane(argv []string, extra string) string {
	return fmt.Sprintf("  exec            = %s\n  ready           = \"notify\"\n  stop_timeout    = \"5s\"\n", hclList(argv)) + extra
}

// startGunicorn runs one gunicorn as a process of its own with opts,
// bound to a loopback port the kernel picked (bind ""), or to bind (a
// unix:PATH), until it accepts. On a port, a probe of probePath must then
// answer 200. A port taken meanwhile by another process makes gunicorn
// give up after its own retries; then another port is tried.
func (b *bench) startGunicorn(name, bind, probePath string, opts ...string) (*server, error) {
	dir, err := b.wsgiDir()
	if err != nil {
		return nil, err
	}
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		addr := bind
		if addr == "" {
			if addr, err = freeAddr(); err != nil {
				return nil, err
			}
		}
		s, err := b.tryGunicorn(name, addr, b.gunicornArgv(dir, append([]string{"--bind", addr}, opts...)...))
		if err != nil {
			last = err
			if bind != "" {
				break
			}
			continue
		}
		if bind == "" && probePath != "" {
			if err := probe(s.addr, probePath, -1); err != nil {
				s.Stop()
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		return s, nil
	}
	return nil, last
}

func (b *bench) tryGunicorn(name, addr string, argv []string) (*server, error) {
	log := &logTail{}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = log
	cmd.Stdout = log
	// SIGTERM: gunicorn's arbiter stops its workers within
	// --graceful-timeout, then kills them; past 5 s the bench kills the
	// whole process group.
	p, err := b.kids.start(name, cmd, syscall.SIGTERM, 5*time.Second)
	if err != nil {
		return nil, err
	}
	network, dial := "tcp", addr
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, dial = "unix", path
	}
	deadline := time.Now().Add(startTimeout)
	for {
		if done, werr := p.Exited(); done {
			return nil, startupFailure(name, fmt.Errorf("exited (%v)", werr), log)
		}
		c, err := net.DialTimeout(network, dial, time.Second)
		if err == nil {
			c.Close()
			return &server{Proc: p, addr: addr, log: log}, nil
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, startupFailure(name, fmt.Errorf("not accepting on %s: %w", addr, err), log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gunicornNotes says what a gunicorn started by the bench logged.
func gunicornNotes(s *server) []string {
	var notes []string
	if w, e, last := s.log.counts(); w+e > 0 {
		notes = append(notes, fmt.Sprintf("%s logged %d warnings and %d errors; last: %s", s.Name, w, e, last))
	}
	if s.Forced() {
		notes = append(notes, fmt.Sprintf("%s did not stop within %s of SIGTERM and was killed", s.Name, s.Grace()))
	}
	return notes
}

// ---------------------------------------------------------------------
// 14. pyisolation

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

// pythonVersion returns e.g. "Python 3.11.2, gunicorn 20.1.0".
func pythonVersion(bin string) string {
	out, err := exec.Command(bin, "-c", "import sys, gunicorn; print('Python %d.%d.%d, gunicorn %s' % (sys.version_info[:3] + (gunicorn.__version__,)))").Output()
	if err != nil {
		return bin
	}
	return strings.TrimSpace(string(out))
}

// ---------------------------------------------------------------------
// 15. pyhang

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

// cmpErr returns the first of a and b that is not nil.
func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
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

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
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

// ---------------------------------------------------------------------
// 16. pythroughput

const pyTPHeading = "16. THROUGHPUT, PYTHON: a trivial WSGI endpoint (GET /fast, 100 bytes), closed loop"

func (b *bench) pyThroughput(ctx context.Context) (func(io.Writer), error) {
	if why := b.pySkip(); why != "" {
		return skipped(pyTPHeading, why), nil
	}
	if b.nginx == "" {
		return skipped(pyTPHeading, "skipped: nginx not installed (apt-get install nginx-light)"), nil
	}
	dir, err := b.wsgiDir()
	if err != nil {
		return nil, err
	}
	n := b.opt.pyWorkers
	path := pyHangFast.path

	// nginx in front of gunicorn on a unix socket, as gunicorn's docs
	// deploy it. The socket's directory is open to nginx's workers (nobody
	// when run as root); gunicorn creates the socket with --umask 0.
	sockDir, err := os.MkdirTemp(b.tmp, "gunicorn-")
	if err != nil {
		return nil, err
	}
	_ = os.Chmod(b.tmp, 0o711)
	_ = os.Chmod(sockDir, 0o755)
	sock := filepath.Join(sockDir, "gunicorn.sock")

	rows := []tpRow{
		{name: fmt.Sprintf("%s → gunicorn --workers %d (sync, unix socket)", nginxVersion(b.nginx), n)},
		{name: fmt.Sprintf("lanes, %d exec workers: gunicorn --workers 1 (sync), concurrency 1", n)},
		{name: fmt.Sprintf("gunicorn --workers %d alone on a port (reference, no proxy)", n)},
	}
	addrs := make([]string, len(rows))
	g, err := b.startGunicorn(fmt.Sprintf("gunicorn --workers %d (behind nginx)", n), "unix:"+sock, "", "--workers", strconv.Itoa(n))
	if err == nil {
		defer g.Stop()
		var ng *server
		ng, err = b.startNginx(b.nginx, "unix:"+sock)
		if err == nil {
			defer ng.Stop()
			err = probe(ng.addr, path, len(originBody))
		}
		if err == nil {
			addrs[0] = ng.addr
		}
	}
	rows[0].err = err

	conf := configHeader + laneBlock("default", n, 1,
		execLane(b.gunicornArgv(dir, "--workers", "1"), "  max_queue       = 1000\n"))
	var notes []string
	l, err := b.startReady("lanesd (pythroughput, exec)", conf, lanesdOpts{}, path, len(originBody))
	if err == nil {
		defer l.Stop()
		addrs[1] = l.addr
		for i, s := range []string{"nginx", "lanes"} {
			if addrs[i] != "" && closesConn(addrs[i], path) {
				notes = append(notes, s+" answered with Connection: close: each client connection carries one request, "+
					"and wrk reconnects for every one")
			}
		}
	}
	rows[1].err = err

	direct, err := b.startGunicorn(fmt.Sprintf("gunicorn --workers %d (direct)", n), "", path, "--workers", strconv.Itoa(n))
	if err == nil {
		defer direct.Stop()
		addrs[2] = direct.addr
	}
	rows[2].err = err

	for round := 1; round <= b.opt.tpRounds && ctx.Err() == nil; round++ {
		for i, addr := range addrs {
			if addr == "" || rows[i].err != nil || ctx.Err() != nil {
				continue
			}
			b.progress("pythroughput round %d/%d, %s: %s warm-up + %s", round, b.opt.tpRounds, rows[i].name, b.opt.tpWarmup, b.opt.tpMeasure)
			if _, err := b.closedPath(ctx, addr, path, b.opt.tpWarmup); err != nil {
				rows[i].err = err
				continue
			}
			tp, err := b.closedPath(ctx, addr, path, b.opt.tpMeasure)
			if err != nil {
				rows[i].err = err
				continue
			}
			rows[i].rounds = append(rows[i].rounds, tp)
		}
	}
	if l != nil {
		l.log.mark()
		l.Stop()
		notes = append(notes, lanesdNotes(l)...)
	}
	var failed error
	for _, r := range rows {
		if r.err != nil && failed == nil {
			failed = r.err
		}
	}
	return func(w io.Writer) {
		fmt.Fprintf(w, "%s\n\n", pyTPHeading)
		fmt.Fprintf(w, "   generator: %s; app: bench/testdata/wsgi_app.py, %s\n", b.generatorName(), pythonVersion(b.opt.python))
		fmt.Fprintf(w, "   %d rounds, targets alternating, each %s warm-up + %s measured; median round shown.\n",
			b.opt.tpRounds, b.opt.tpWarmup, b.opt.tpMeasure)
		fmt.Fprintf(w, "   nginx: the bench's proxy config (workers auto, upstream keepalive 64); gunicorn's sync workers\n")
		fmt.Fprintf(w, "   close every connection after one request, behind nginx and behind lanes alike.\n\n")
		var t table
		t.row("target", "req/s", "rounds min–max", "p50", "p99", "errors")
		rps := make([]float64, len(rows))
		for i, row := range rows {
			if row.err != nil || len(row.rounds) == 0 {
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
		fmt.Fprintln(w)
		if rps[0] > 0 && rps[1] > 0 {
			fmt.Fprintf(w, "   lanes / nginx: %s   target ≥ 1.00× → %s\n", ratio(rps[1], rps[0]), verdict(rps[1] >= rps[0]))
		} else {
			fmt.Fprintf(w, "   lanes / nginx: -   (not both measured)\n")
		}
		if rps[2] > 0 {
			fmt.Fprintf(w, "   nginx / gunicorn alone: %s, lanes / gunicorn alone: %s\n", ratio(rps[0], rps[2]), ratio(rps[1], rps[2]))
		}
		for _, row := range rows {
			if row.err != nil {
				fmt.Fprintf(w, "   error, %s: %v\n", row.name, row.err)
			}
		}
		for _, n := range notes {
			fmt.Fprintf(w, "   note: %s\n", n)
		}
		fmt.Fprintln(w)
	}, cmpErr(failed, ctx.Err())
}

// closesConn reports whether a GET of path on addr is answered with
// Connection: close, which a proxy in front of workers that close every
// connection (gunicorn's sync workers) should not pass on to its clients.
func closesConn(addr, path string) bool {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + path)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		return false
	}
	return resp.ConnectionClose()
}

// closedPath runs the chosen closed-loop generator on one path.
func (b *bench) closedPath(ctx context.Context, addr, path string, d time.Duration) (throughput, error) {
	if b.wrk != nil {
		return b.wrk.run(b, addr, path, d)
	}
	if ctx.Err() != nil {
		return throughput{}, ctx.Err()
	}
	return closedLoop(ctx, addr, path, b.opt.conns, d), nil
}
