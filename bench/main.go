// Command bench measures lanes against the promises of the README, every
// figure side by side in one run, and prints a plain-text report:
//
//  1. isolation: fast requests keep their latency next to slow ones when
//     the slow URL has a lane of its own, and do not in one pool;
//  2. proxy throughput of small responses: direct, through lanes, through
//     nginx, and lanes with the same handler in its workers (no hop);
//  3. added latency of the lanes hop at a light constant rate, the same
//     four targets;
//  4. auto_map: the isolation scenario with no static slow mapping, the
//     slow URL learned at runtime;
//  5. burst: an idle lane hit by 10× its capacity, fixed size vs. room to
//     grow;
//  6. drain and reload under constant load;
//  7. workers SIGKILLed under constant load;
//  8. slow readers and 9. big uploads: can ordinary requests get through,
//     and how much memory each process grows;
//  10. theming: themed vs. unthemed, the filter time, theme origin fetches,
//     a hung theme origin, fetchd's memory with 1,000 cached pages;
//  11. the access log's cost, and 12. a per-request breakdown of CPU,
//     system calls, allocations and bytes copied for lanes and nginx;
//  13. download: one big response at a time, direct, through lanes and
//     through nginx: MB/s, and how much each process grows;
//  14. pyisolation: the isolation table against a Python WSGI app, one
//     gunicorn pool of 8 sync workers vs. lanes running gunicorn as its
//     exec lane workers, the slow URL in a lane of its own;
//  15. pyhang: a hung request every 2 s beside fast ones, the app on a
//     4-thread gunicorn behind lanes in upstream mode vs. the same app as
//     exec lane workers, the % of fast requests answered per 5 s window;
//  16. pythroughput: a trivial WSGI endpoint, nginx in front of N sync
//     gunicorn workers vs. lanes with N gunicorn lane workers;
//  17. soak: minutes of fast, slow, hanging and crashing requests with
//     SIGUSR2 every 30 s: the front's RSS and descriptors at start and
//     end, and any non-2xx beyond the expected ones.
//
// The Python scenarios need gunicorn under -python (apt-get install
// python3-gunicorn) and say so when it is missing; their app is
// testdata/wsgi_app.py.
//
// Run it with `make bench`, which builds lanesd first:
//
//	go run ./bench -lanesd bin/lanesd
//
// Every server runs as a process of its own on 127.0.0.1 with a port the
// kernel picks, and each is stopped however the bench ends (lanesd gets
// SIGTERM). The load generators live in load.go; wrk, when installed, does
// the closed-loop runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// options are the bench's flags.
type options struct {
	lanesd       string
	nginx        string
	haproxy      string
	gen          string
	only         string
	isoWarmup    time.Duration
	isoMeasure   time.Duration
	tpWarmup     time.Duration
	tpMeasure    time.Duration
	tpRounds     int
	conns        int
	proxyWorkers int
	proxyConc    int
	latRate      float64
	latMeasure   time.Duration
	latRounds    int

	amMeasure    time.Duration
	burstFactor  int
	burstRounds  int
	ctlRate      float64
	ctlPhase     time.Duration
	killRate     float64
	kills        int
	killEvery    time.Duration
	slowReaders  int
	slowTime     time.Duration
	uploads      int
	uploadMB     int
	themeRounds  int
	themeTime    time.Duration
	themeHung    time.Duration
	themePages   int
	breakdownReq int
	straceTime   time.Duration

	downloadMB     int
	downloadRounds int

	python       string
	pyIsoMeasure time.Duration
	pyHangTime   time.Duration
	pyWorkers    int
	soakTime     time.Duration
}

// scenario is one entry of the bench, in the file of its name: it runs
// when -only names any of names (every scenario runs without -only), and
// returns what to print.
type scenario struct {
	names []string
	run   func(b *bench, ctx context.Context) (func(io.Writer), error)
}

// scenarioTable is every scenario, in the order they run and print.
var scenarioTable = []scenario{
	{[]string{"isolation"}, (*bench).isolationScenario},
	// One set of servers, measured for either or both.
	{[]string{"throughput", "latency"}, (*bench).throughputLatency},
	{[]string{"automap"}, (*bench).autoMap},
	{[]string{"burst"}, (*bench).burst},
	{[]string{"drain"}, (*bench).drainReload},
	{[]string{"kills"}, (*bench).kills},
	{[]string{"slowreaders"}, (*bench).slowReaders},
	{[]string{"uploads"}, (*bench).uploads},
	{[]string{"theming"}, (*bench).theming},
	{[]string{"accesslog"}, (*bench).accessLog},
	{[]string{"breakdown"}, (*bench).breakdown},
	{[]string{"download"}, (*bench).download},
	{[]string{"pyisolation"}, (*bench).pyIsolation},
	{[]string{"pyhang"}, (*bench).pyHang},
	{[]string{"pythroughput"}, (*bench).pyThroughput},
	{[]string{"soak"}, (*bench).soak},
}

// scenarioNames are the names -only takes, in the order they run.
func scenarioNames() []string {
	var out []string
	for _, sc := range scenarioTable {
		out = append(out, sc.names...)
	}
	return out
}

// bench is one run: its options, the processes it started, and where
// progress goes.
type bench struct {
	opt   options
	kids  *children
	tmp   string // private directory for configs and nginx's prefix
	log   io.Writer
	wrk   *wrk   // nil: the Go closed-loop generator
	nginx string // nginx binary; "" when not installed
	// haproxy is the haproxy binary; "" when not installed.
	haproxy string
	args    []string

	report *strings.Builder // the report so far
	want   map[string]bool  // the scenarios to run, by name
	iso    []isoResult      // isolation's results, which automap reuses
}

func main() {
	// The origin server, and the app-in-worker lane's worker, are this
	// binary run again; see origin.go.
	if len(os.Args) == 3 && os.Args[1] == originFlag {
		os.Exit(runOrigin(os.Args[2]))
	}
	if len(os.Args) == 3 && os.Args[1] == bareProxyFlag {
		os.Exit(runBareProxy(os.Args[2]))
	}
	if len(os.Args) == 2 && os.Args[1] == appWorkerFlag {
		runAppWorker()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.lanesd, "lanesd", "bin/lanesd", "lanesd `binary` to measure (make bench builds it)")
	fs.StringVar(&o.nginx, "nginx", "", "nginx `binary` (default: nginx on PATH, else /usr/sbin/nginx)")
	fs.StringVar(&o.haproxy, "haproxy", "", "haproxy `binary` (default: haproxy on PATH, else /usr/sbin/haproxy)")
	fs.StringVar(&o.gen, "gen", "auto", "closed-loop generator: wrk, go, or auto (wrk when on PATH)")
	fs.StringVar(&o.only, "only", "", "comma-separated scenarios to run: "+strings.Join(scenarioNames(), ", ")+" (default all)")
	fs.DurationVar(&o.isoWarmup, "iso-warmup", 2*time.Second, "isolation: warm-up per setup, not counted")
	fs.DurationVar(&o.isoMeasure, "iso-time", 15*time.Second, "isolation: measured time per setup")
	fs.IntVar(&o.tpRounds, "tp-rounds", 3, "throughput: rounds, each measuring every target once")
	fs.DurationVar(&o.tpWarmup, "tp-warmup", time.Second, "throughput: warm-up per target and round")
	fs.DurationVar(&o.tpMeasure, "tp-time", 4*time.Second, "throughput: measured time per target and round")
	fs.IntVar(&o.conns, "conns", 64, "throughput: keep-alive connections")
	fs.IntVar(&o.proxyWorkers, "proxy-workers", 2, "throughput and latency: lanes workers proxying to the origin")
	fs.IntVar(&o.proxyConc, "proxy-concurrency", 64, "throughput and latency: requests each lanes worker runs at once")
	fs.Float64Var(&o.latRate, "lat-rate", 200, "added latency: requests per second")
	fs.DurationVar(&o.latMeasure, "lat-time", 10*time.Second, "added latency: measured time per target, over all rounds")
	fs.IntVar(&o.latRounds, "lat-rounds", 5, "added latency: rounds, each measuring every target for lat-time/lat-rounds")
	fs.DurationVar(&o.amMeasure, "am-time", 15*time.Second, "automap: measured time of the learning run, from lanesd's start (unloaded and one pool come from isolation when it runs)")
	fs.IntVar(&o.burstFactor, "burst-factor", 10, "burst: requests sent at once, as a multiple of the lane's min_workers capacity")
	fs.IntVar(&o.burstRounds, "burst-rounds", 3, "burst: bursts per setup, each on an idle lane")
	fs.Float64Var(&o.ctlRate, "ctl-rate", 200, "drain: requests per second during drain and reload")
	fs.DurationVar(&o.ctlPhase, "ctl-phase", 4*time.Second, "drain: load before the drain, between drain and reload, and after")
	fs.Float64Var(&o.killRate, "kill-rate", 300, "kills: GET requests per second")
	fs.IntVar(&o.kills, "kills", 7, "kills: workers SIGKILLed one after another")
	fs.DurationVar(&o.killEvery, "kill-every", 500*time.Millisecond, "kills: time between two kills")
	fs.IntVar(&o.slowReaders, "slow-readers", 32, "slowreaders: clients that never read their 20 MB response")
	fs.DurationVar(&o.slowTime, "slow-time", 5*time.Second, "slowreaders: ordinary requests sent while the slow readers hold on")
	fs.IntVar(&o.uploads, "uploads", 16, "uploads: parallel uploads")
	fs.IntVar(&o.uploadMB, "upload-mb", 50, "uploads: size of each upload, MB")
	fs.IntVar(&o.themeRounds, "theme-rounds", 3, "theming: rounds, themed and unthemed alternating")
	fs.DurationVar(&o.themeTime, "theme-time", 4*time.Second, "theming: measured time per target and round")
	fs.DurationVar(&o.themeHung, "theme-hung", 5*time.Second, "theming: load while the theme origin hangs")
	fs.IntVar(&o.themePages, "theme-pages", 1000, "theming: 50 KB pages fetchd caches for its RSS figure")
	fs.IntVar(&o.breakdownReq, "breakdown-requests", 100000, "breakdown: requests per target over which CPU and bytes are counted")
	fs.DurationVar(&o.straceTime, "strace-time", 3*time.Second, "breakdown: how long strace -c counts each process's system calls")
	fs.IntVar(&o.downloadMB, "download-mb", 100, "download: size of the response, MB")
	fs.IntVar(&o.downloadRounds, "download-rounds", 3, "download: rounds, each fetching once through every target")
	fs.StringVar(&o.python, "python", "/usr/bin/python3", "pyisolation, pyhang, pythroughput: the `python` that runs gunicorn (python -m gunicorn)")
	fs.DurationVar(&o.pyIsoMeasure, "pyiso-time", 6*time.Second, "pyisolation: measured time per setup (warm-up: -iso-warmup)")
	fs.DurationVar(&o.pyHangTime, "pyhang-time", 25*time.Second, "pyhang: measured time per mode, in 5 s windows")
	fs.IntVar(&o.pyWorkers, "py-workers", 4, "pythroughput: gunicorn sync workers behind nginx, and lanes' exec workers (rounds and times: -tp-*)")
	fs.DurationVar(&o.soakTime, "soak-time", 5*time.Minute, "soak: how long the mixed load (with SIGUSR2 every 30 s) runs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	want, err := parseOnly(o.only)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	if _, err := os.Stat(o.lanesd); err != nil {
		fmt.Fprintf(stderr, "bench: lanesd: %v (run make build, or make bench)\n", err)
		return 1
	}

	b := &bench{opt: o, kids: &children{}, log: stderr, args: args, want: want}
	if b.tmp, err = os.MkdirTemp("", "lanes-bench-"); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	cleanup := func() {
		b.kids.stopAll()
		os.RemoveAll(b.tmp)
	}
	defer cleanup()
	if err := b.pickTools(); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}

	// Ctrl-C or SIGTERM: stop every child (lanesd politely) and leave. The
	// load generators are not interruptible mid-request, so do not wait
	// for them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(stderr, "\nbench: %v: stopping the servers\n", sig)
		cancel()
		cleanup()
		os.Exit(130)
	}()

	start := time.Now()
	var report strings.Builder
	b.report = &report
	b.printHeader(&report)
	failed := false
	for _, sc := range scenarioTable {
		var ran []string
		for _, n := range sc.names {
			if want[n] {
				ran = append(ran, n)
			}
		}
		if len(ran) == 0 || ctx.Err() != nil {
			continue
		}
		name := strings.Join(ran, ",")
		print, err := sc.run(b, ctx)
		if print != nil {
			print(&report)
		}
		if err != nil {
			fmt.Fprintf(&report, "   %s stopped: %v\n\n", name, err)
			failed = true
		}
		fmt.Fprintf(&report, "   reproduce: %s\n\n", b.commandFor(name))
	}
	fmt.Fprintf(&report, "bench took %s; loadavg at the end: %s\n", time.Since(start).Round(time.Second), loadavg())
	fmt.Fprintf(&report, "reproduce: make bench   (or: %s)\n", b.command())
	fmt.Fprint(stdout, report.String())
	if failed {
		return 1
	}
	return 0
}

// parseOnly parses -only.
func parseOnly(only string) (map[string]bool, error) {
	all := map[string]bool{}
	for _, n := range scenarioNames() {
		all[n] = true
	}
	if only == "" {
		return all, nil
	}
	want := map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		s = strings.TrimSpace(s)
		if !all[s] {
			return nil, fmt.Errorf("-only: unknown scenario %q (want %s)", s, strings.Join(scenarioNames(), ", "))
		}
		want[s] = true
	}
	return want, nil
}

// pickTools finds wrk, nginx and HAProxy.
func (b *bench) pickTools() error {
	b.nginx = findNginx(b.opt.nginx)
	b.haproxy = findHAProxy(b.opt.haproxy)
	threads := max(1, runtime.NumCPU()/2) // leave the rest to the servers measured
	switch b.opt.gen {
	case "auto", "wrk":
		if p, err := exec.LookPath("wrk"); err == nil {
			b.wrk = &wrk{bin: p, threads: min(threads, b.opt.conns), conns: b.opt.conns}
		} else if b.opt.gen == "wrk" {
			return fmt.Errorf("-gen wrk: %w", err)
		}
	case "go":
	default:
		return fmt.Errorf("-gen %q: want wrk, go or auto", b.opt.gen)
	}
	return nil
}

func (b *bench) generatorName() string {
	if b.wrk != nil {
		return fmt.Sprintf("%s -t%d -c%d", wrkVersion(b.wrk.bin), b.wrk.threads, b.wrk.conns)
	}
	why := "wrk not installed"
	if b.opt.gen == "go" {
		why = "-gen go"
	}
	return fmt.Sprintf("Go closed loop (fasthttp client, %d goroutines; %s)", b.opt.conns, why)
}

// progress says on stderr what the bench is doing; the report goes to
// stdout at the end.
func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", args...)
}

// printHeader writes the machine and tools the figures come from.
func (b *bench) printHeader(w io.Writer) {
	fmt.Fprintf(w, "lanes bench, %s\n\n", time.Now().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "   machine: %d CPUs (%s), %s, GOMAXPROCS %d\n", runtime.NumCPU(), cpuModel(), kernel(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(w, "   go:      %s (%s)\n", goVersion(), runtime.Version())
	fmt.Fprintf(w, "   lanesd:  %s\n", b.opt.lanesd)
	nginx := "not installed (apt-get install nginx-light)"
	if b.nginx != "" {
		nginx = b.nginx + " " + nginxVersion(b.nginx)
	}
	fmt.Fprintf(w, "   nginx:   %s\n", nginx)
	haproxy := "not installed (apt-get install haproxy)"
	if b.haproxy != "" {
		haproxy = b.haproxy + " " + haproxyVersion(b.haproxy)
	}
	fmt.Fprintf(w, "   haproxy: %s\n", haproxy)
	fmt.Fprintf(w, "   load:    %s\n", b.generatorName())
	fmt.Fprintf(w, "   loadavg: %s at the start (the bench's own servers are idle; more means neighbours)\n\n", loadavg())
}

// loadavg returns the 1, 5 and 15 minute load averages: on a shared
// machine they tell how far to trust the figures.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// commandFor is the command line that repeats one scenario of this run:
// this run's flags, but -only name.
func (b *bench) commandFor(name string) string {
	saved := b.args
	defer func() { b.args = saved }()
	var args []string
	for i := 0; i < len(saved); i++ {
		a := strings.TrimLeft(saved[i], "-")
		switch {
		case a == "only":
			i++ // its value follows
		case strings.HasPrefix(a, "only="):
		default:
			args = append(args, saved[i])
		}
	}
	b.args = append(args, "-only", name)
	return b.command()
}

// command is the command line that repeats this run.
func (b *bench) command() string {
	parts := []string{"go run ./bench"}
	hasLanesd := false
	for _, a := range b.args {
		if strings.HasPrefix(strings.TrimLeft(a, "-"), "lanesd") {
			hasLanesd = true
		}
	}
	if !hasLanesd {
		parts = append(parts, "-lanesd", b.opt.lanesd)
	}
	for _, a := range b.args {
		if strings.ContainsAny(a, " \t'\"") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return runtime.GOARCH
}

// kernel returns e.g. "linux 6.1.0-18-amd64".
func kernel() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return runtime.GOOS
	}
	var sb strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return runtime.GOOS + " " + sb.String()
}

// goVersion is what `go version` says: the toolchain that builds lanesd
// with make.
func goVersion() string {
	out, err := exec.Command("go", "version").Output()
	if err != nil {
		return "go not on PATH"
	}
	return strings.TrimSpace(string(out))
}
