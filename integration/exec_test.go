package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// The exec lanes (issue 12): workers that are processes of any program,
// here the Python example app (examples/wsgi/app.py) alone and under
// gunicorn, handed their socket by systemd socket activation and contained
// by their process group.

// TestExecStdlib: the example app on fd 3 serves through the lanes; it got
// LISTEN_PID = its own pid, LISTEN_FDNAMES=lanes, its lane's name and no
// PORT; the status shows the app's pid, and /proc the tree lanesd → shim
// (lanesd itself) → app, the app leading its own process group; its
// stderr lines are in lanesd's log under the worker's name. No app block.
func TestExecStdlib(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers = 2
  max_workers = 2
  exec        = %[1]s
  health_path = "/healthz"
}
lane "other" {
  min_workers = 1
  max_workers = 1
  exec        = %[1]s
  map         = ["GET /other/*"]
}
`, stdlibExec(t)))
	pids := l.readyPIDs(t, "default", 2, 15*time.Second)

	r := l.mustGet(t, "/", 200)
	if !strings.Contains(string(r.body), "Hello from Python") || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Errorf("GET /: %s, Content-Type %q", r, r.header.Get("Content-Type"))
	}
	// The app answers Connection: close (one request per connection):
	// that is between the worker and lanes, not the client's.
	if c := r.header.Get("Connection"); c != "" {
		t.Errorf("GET /: Connection: %s reached the client", c)
	}
	pid := l.getInt(t, "/pid")
	if !contains(pids, pid) {
		t.Errorf("/pid answered %d; the status shows workers %v (want the app's pid)", pid, pids)
	}
	env := l.appEnv(t)
	if env["LISTEN_FDS"] != "1" || env["LISTEN_FDNAMES"] != "lanes" || env["LANES_LANE"] != "default" {
		t.Errorf("app's environment %v: want LISTEN_FDS=1, LISTEN_FDNAMES=lanes, LANES_LANE=default", env)
	}
	lp, _ := strconv.Atoi(env["LISTEN_PID"])
	if !contains(pids, lp) {
		t.Errorf("LISTEN_PID=%s; want the pid of the app that read it, one of %v", env["LISTEN_PID"], pids)
	}
	if env["LANES_SOCKET"] == "" {
		t.Errorf("app's environment %v: no LANES_SOCKET", env)
	}
	if v, ok := env["PORT"]; ok {
		t.Errorf("PORT=%q in fd mode; want none", v)
	}
	if got := strings.TrimSpace(string(l.mustGet(t, "/other/x", 404).body)); got != "not found" {
		t.Errorf("GET /other/x: %q", got)
	}

	// The tree: lanesd → shim → app, the app leading its group.
	for _, p := range pids {
		shim := ppid(p)
		if ppid(shim) != l.PID {
			t.Errorf("app %d: parent %d, whose parent is %d; want a shim whose parent is lanesd %d", p, shim, ppid(shim), l.PID)
		}
		if e := exe(shim); e != lanesdBin {
			t.Errorf("app %d's parent %d runs %q; want the shim, lanesd itself (%s)", p, shim, e, lanesdBin)
		}
		if g := procPgid(p); g != p {
			t.Errorf("app %d is in process group %d; want a group of its own", p, g)
		}
		if g := procPgid(shim); g == p {
			t.Errorf("shim %d is in the app's process group %d", shim, g)
		}
	}
	for _, w := range l.lane(t, "default").Workers {
		if w.RSS <= 0 || w.State != "ready" {
			t.Errorf("worker %d: rss %d, state %q; want > 0 and ready", w.PID, w.RSS, w.State)
		}
	}

	// The app's own lines, under the worker's name.
	l.waitLog(t, 5*time.Second, fmt.Sprintf("app.py: pid %d serving on fd 3 (lanes)", pid), `"GET /env HTTP/1.1" 200`)
	for _, line := range strings.Split(l.Log.String(), "\n") {
		if strings.Contains(line, fmt.Sprintf("app.py: pid %d serving", pid)) && !strings.Contains(line, "lane=default") {
			t.Errorf("the app's line does not name its lane and worker: %s", line)
		}
	}
	l.waitLog(t, 5*time.Second, "path=/env status=200") // the access log
}

// TestExecHang: a request hung in the app gets 504 at the lane's
// request_timeout, and the app process that held it is killed and
// replaced; meanwhile every request of another lane is answered.
func TestExecHang(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers     = 1
  max_workers     = 1
  exec            = %[1]s
  request_timeout = "2s"
}
lane "quick" {
  min_workers = 2
  max_workers = 2
  exec        = %[1]s
  map         = ["GET /fast"]
}
`, stdlibExec(t)))
	before := l.readyPIDs(t, "default", 1, 15*time.Second)
	l.readyPIDs(t, "quick", 2, 15*time.Second)
	// Without health_path a worker is in rotation at once, while Python
	// still starts (seconds on a loaded machine): wait until both apps of
	// the quick lane answer, so that the window below measures the hang,
	// not the start.
	waitFor(t, "both apps of the quick lane to answer", 30*time.Second, func() bool {
		for _, r := range l.parallelGets([]string{"/fast", "/fast"}) {
			if r.err != nil || r.status != http.StatusOK || r.took > 500*time.Millisecond {
				return false
			}
		}
		return true
	})
	if r := l.get("/pid"); r.err != nil || r.status != http.StatusOK {
		t.Fatalf("GET /pid before the hang: %s", r)
	}

	hung := make(chan result, 1)
	go func() { hung <- l.get("/hang") }()
	var fast []result
	for deadline := time.Now().Add(10 * time.Second); len(hung) == 0 && time.Now().Before(deadline); {
		fast = append(fast, l.get("/fast"))
		time.Sleep(20 * time.Millisecond)
	}
	r := <-hung
	if r.err != nil || r.status != http.StatusGatewayTimeout {
		t.Fatalf("GET /hang: want 504, got %s", r)
	}
	if r.took < 2*time.Second || r.took > 6*time.Second {
		t.Errorf("GET /hang answered after %v; want soon after request_timeout (2s)", r.took)
	}
	for i, f := range fast {
		if f.err != nil || f.status != 200 {
			t.Errorf("GET /fast #%d during the hang: %s", i, f)
		}
	}
	if len(fast) < 20 {
		t.Errorf("only %d fast requests during a 2 s hang", len(fast))
	}
	waitGone(t, "the app that held the hung request", before, 5*time.Second)
	gone, added := replaced(t, l, "default", before, 1, 15*time.Second)
	t.Logf("504 after %v; %d fast requests meanwhile; app %v replaced by %v", r.took.Round(time.Millisecond), len(fast), gone, added)
	if ls := l.lane(t, "default"); ls.Timeouts != 1 || ls.Killed != 1 {
		t.Errorf("status: timeouts %d, killed %d; want 1 and 1", ls.Timeouts, ls.Killed)
	}
	if pid := l.getInt(t, "/pid"); !contains(added, pid) {
		t.Errorf("/pid after the kill: %d; want the new worker %v", pid, added)
	}
}

// TestExecGunicornHang: under real gunicorn (arbiter and forked workers),
// a hung request gets 504, and the forked worker that held it — a
// grandchild of the shim — dies with its arbiter: the whole process group
// goes. The status shows the arbiter's pid.
func TestExecGunicornHang(t *testing.T) {
	t.Parallel()
	ex := gunicornExec(t, 2)
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers     = 1
  max_workers     = 1
  concurrency     = 2
  exec            = %s
  health_path     = "/healthz"
  request_timeout = "2s"
}
`, ex))
	arbiter := l.readyPIDs(t, "default", 1, 20*time.Second)[0]
	served := l.getInt(t, "/pid")
	if served == arbiter || ppid(served) != arbiter {
		t.Errorf("/pid answered %d (parent %d); want a worker forked by the arbiter %d, which the status shows", served, ppid(served), arbiter)
	}
	if e := exe(arbiter); e == lanesdBin {
		t.Errorf("the status shows pid %d, which runs %s: want the app (gunicorn's arbiter), not the shim", arbiter, e)
	}
	var forks []int
	waitFor(t, "gunicorn's 2 forked workers", 10*time.Second, func() bool {
		forks = descendants(arbiter)
		return len(forks) == 2
	})
	for _, p := range forks {
		if g := procPgid(p); g != arbiter {
			t.Errorf("gunicorn worker %d in process group %d; want the arbiter's %d", p, g, arbiter)
		}
	}

	r := l.get("/hang")
	if r.err != nil || r.status != http.StatusGatewayTimeout {
		t.Fatalf("GET /hang: want 504, got %s", r)
	}
	if r.took > 6*time.Second {
		t.Errorf("GET /hang answered after %v; want soon after request_timeout (2s)", r.took)
	}
	waitGone(t, "gunicorn's arbiter and forked workers after the hard timeout", append([]int{arbiter}, forks...), 5*time.Second)
	_, added := replaced(t, l, "default", []int{arbiter}, 1, 20*time.Second)
	if p := l.getInt(t, "/pid"); ppid(p) != added[0] {
		t.Errorf("after the kill, /pid answered %d (parent %d); want a fork of the new arbiter %d", p, ppid(p), added[0])
	}
}

// TestExecGunicornNotify: gunicorn with ready = "notify" takes requests
// once its arbiter sends READY=1.
func TestExecGunicornNotify(t *testing.T) {
	t.Parallel()
	ex := gunicornExec(t, 1)
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers = 1
  max_workers = 1
  exec        = %s
  ready       = "notify"
}
`, ex))
	arbiter := l.readyPIDs(t, "default", 1, 20*time.Second)[0]
	env := l.appEnv(t)
	// gunicorn's arbiter removes LISTEN_* from its environment once it has
	// taken the socket, before it forks the worker that answers /env.
	if env["NOTIFY_SOCKET"] == "" || env["LANES_LANE"] != "default" {
		t.Errorf("gunicorn's environment %v: want NOTIFY_SOCKET and LANES_LANE=default", env)
	}
	l.waitLog(t, 5*time.Second, fmt.Sprintf("Listening at: unix:%s (%d)", env["LANES_SOCKET"], arbiter))
	for i := range 5 {
		if p := l.getInt(t, "/pid"); ppid(p) != arbiter {
			t.Errorf("GET /pid #%d: %d, whose parent is %d; want a fork of %d", i, p, ppid(p), arbiter)
		}
	}
}

// noOrphansConfig runs the app alone in one lane and, where gunicorn is
// installed, under gunicorn (which forks) in another.
func noOrphansConfig(t *testing.T) (string, int) {
	hcl := fmt.Sprintf(`
lane "default" {
  min_workers = 2
  max_workers = 2
  exec        = %s
}
`, stdlibExec(t))
	apps := 2
	if haveGunicorn() {
		hcl += fmt.Sprintf(`
lane "g" {
  min_workers = 1
  max_workers = 1
  exec        = %s
  ready       = "notify"
  map         = ["GET /g/*"]
}
`, gunicornExec(t, 2))
		apps += 3 // the arbiter and its 2 workers
	}
	return hcl, apps
}

// TestExecNoOrphans: no app process outlives lanesd, whether it stops on
// SIGTERM or dies of SIGKILL (then the shims end their groups, gunicorn's
// forks included, and remove lanesd's run directory).
func TestExecNoOrphans(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			hcl, apps := noOrphansConfig(t)
			tmp := newTmp(t)
			l := startLanesdIn(t, t.TempDir(), tmp, hcl)
			l.readyPIDs(t, "default", 2, 15*time.Second)
			var all []int
			waitFor(t, fmt.Sprintf("%d app processes", apps), 20*time.Second, func() bool {
				all = nil
				for _, p := range descendants(l.PID) {
					if exe(p) != lanesdBin { // not a shim
						all = append(all, p)
					}
				}
				return len(all) >= apps
			})
			kids := descendants(l.PID)
			inflight := make(chan result, 1)
			if sig == syscall.SIGTERM { // a graceful stop finishes it first
				go func() { inflight <- l.get("/sleep?ms=800") }()
				waitFor(t, "the request to be in flight", 5*time.Second, func() bool { return l.lane(t, "default").Inflight == 1 })
			}
			l.signal(t, sig)
			code := l.wait(t, 15*time.Second)
			if sig == syscall.SIGTERM {
				if code != 0 {
					t.Errorf("lanesd exited %d on SIGTERM; want 0", code)
				}
				if r := <-inflight; r.err != nil || r.status != 200 {
					t.Errorf("GET /sleep?ms=800 in flight at SIGTERM: %s; want 200", r)
				}
			}
			waitGone(t, "a process of lanesd's after its "+sig.String(), kids, 5*time.Second)
			t.Logf("%d processes below lanesd (%d of the apps), none left after %v", len(kids), len(all), sig)
			waitFor(t, "lanesd's run directory to be removed", 5*time.Second, func() bool {
				ents, _ := os.ReadDir(tmp)
				for _, e := range ents {
					if strings.HasPrefix(e.Name(), "lanes-") {
						return false
					}
				}
				return true
			})
		})
	}
}

// TestExecRetry: a GET whose app dies under it, unanswered, is answered
// by another worker; a POST is not sent twice (502); a GET that kills
// every app it reaches kills at most two.
func TestExecRetry(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers = 2
  max_workers = 2
  exec        = %s
  health_path = "/healthz"
}
`, stdlibExec(t)))
	// busyApp waits for the one app with a request in flight.
	busyApp := func() int {
		var pid int
		waitFor(t, "a request in flight", 5*time.Second, func() bool {
			for _, w := range l.lane(t, "default").Workers {
				if w.Inflight == 1 {
					pid = w.PID
					return true
				}
			}
			return false
		})
		return pid
	}
	for _, c := range []struct {
		method string
		want   int
	}{{http.MethodGet, 200}, {http.MethodPost, http.StatusBadGateway}} {
		before := l.readyPIDs(t, "default", 2, 15*time.Second)
		res := make(chan result, 1)
		go func() { res <- do(l.client, c.method, l.URL("/sleep?ms=1000"), nil, nil) }()
		victim := busyApp()
		if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if r := <-res; r.err != nil || r.status != c.want {
			t.Errorf("%s /sleep?ms=1000 whose app %d was killed under it: %s; want %d", c.method, victim, r, c.want)
		}
		replaced(t, l, "default", before, 2, 15*time.Second)
	}

	before := l.readyPIDs(t, "default", 2, 15*time.Second)
	if r := l.get("/crash"); r.err != nil || r.status != http.StatusBadGateway {
		t.Errorf("GET /crash: %s; want 502", r)
	}
	waitGone(t, "the apps /crash reached", before, 5*time.Second)
	l.readyPIDs(t, "default", 2, 15*time.Second)
	l.mustGet(t, "/fast", 200)
}

// TestExecHealthPath: an app whose health_path starts failing (500 or
// more) is replaced at the next health check.
func TestExecHealthPath(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers = 1
  max_workers = 1
  exec        = %s
  health_path = "/healthz"
}
`, stdlibExec(t)))
	before := l.readyPIDs(t, "default", 1, 15*time.Second)
	l.mustGet(t, "/healthz", 200)
	l.mustGet(t, "/sick", 200)
	l.mustGet(t, "/healthz", 503) // the app's own answer, passed on
	// One health check every 5 s.
	_, added := replaced(t, l, "default", before, 1, 15*time.Second)
	waitGone(t, "the app failing its health checks", before, 5*time.Second)
	l.mustGet(t, "/healthz", 200)
	l.waitLog(t, 5*time.Second, "failed its health check")
	t.Logf("app %v replaced by %v", before, added)
}

// TestExecDrain: a drain of an exec lane under constant load replaces
// every app process with no request failing.
func TestExecDrain(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers  = 2
  max_workers  = 2
  exec         = %s
  health_path  = "/healthz"
  stop_timeout = "3s"
}
`, stdlibExec(t)))
	old := l.readyPIDs(t, "default", 2, 15*time.Second)
	ld := l.startLoad(4, "/fast", "/sleep?ms=50")
	waitFor(t, "load to run", 5*time.Second, func() bool { return ld.sentSoFar() > 20 })
	l.drain(t, "default")
	mid := l.waitReplaced(t, "default", old, 2)
	l.signal(t, syscall.SIGUSR2)
	now := l.waitReplaced(t, "default", mid, 2)
	time.Sleep(200 * time.Millisecond)
	ld.finish(t, 50)
	waitGone(t, "drained app", append(old, mid...), 10*time.Second)
	t.Logf("apps %v drained by the API, then %v by SIGUSR2; now %v", old, mid, now)
}

// TestExecStopSignal: a graceful stop sends stop_signal to the program's
// group (the program's stdout shows it got it), and a program that
// ignores it is killed once stop_timeout passes.
func TestExecStopSignal(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
lane "default" {
  min_workers = 1
  max_workers = 1
  exec        = ["/bin/sh", "-c", "trap 'echo stop-signal-INT; exit 0' INT; echo started $$; while :; do sleep 0.1; done"]
  stop_signal  = "SIGINT"
  stop_timeout = "20s"
}
lane "stubborn" {
  min_workers  = 1
  max_workers  = 1
  exec         = ["/bin/sh", "-c", "trap '' TERM; echo stubborn $$; while :; do sleep 0.1; done"]
  stop_timeout = "1s"
  map          = ["GET /stubborn"]
}
`)
	def := l.readyPIDs(t, "default", 1, 15*time.Second)
	stub := l.readyPIDs(t, "stubborn", 1, 15*time.Second)
	l.waitLog(t, 5*time.Second, fmt.Sprintf("started %d", def[0]), fmt.Sprintf("stubborn %d", stub[0]))
	// The program starts with the signal dispositions of a program run
	// from a shell: none of lanesd's or the shim's ignored signals (an
	// ignored SIGINT cannot even be trapped by sh, nor caught by Python's
	// default handler).
	if ign := sigIgnored(def[0]); len(ign) > 0 {
		t.Errorf("the program %d starts with %v ignored; want none", def[0], ign)
	}

	l.drain(t, "default")
	start := time.Now()
	l.drain(t, "stubborn")
	// Its replacement's probation (1 s) first, then SIGINT ends it at once;
	// only a lost signal would leave it to stop_timeout's SIGKILL (20 s).
	waitGone(t, "the drained program (stop_signal SIGINT, stop_timeout 20s)", def, 8*time.Second)
	l.waitLog(t, 5*time.Second, "stop-signal-INT")
	waitGone(t, "the program ignoring SIGTERM", stub, 10*time.Second)
	took := time.Since(start)
	if took < time.Second {
		t.Errorf("the program ignoring SIGTERM was gone %v after its drain began; want stop_timeout (1s) first", took)
	}
	l.waitReplaced(t, "default", def, 1)
	l.waitReplaced(t, "stubborn", stub, 1)
	t.Logf("the stubborn program went %v after its drain began", took.Round(time.Millisecond))
}

// TestExecScale: an exec lane grows past min_workers while requests wait
// and every app is busy, and shrinks back after idle_timeout, stopping
// the extra apps.
func TestExecScale(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers  = 1
  max_workers  = 3
  exec         = %s
  health_path  = "/healthz"
  idle_timeout = "1s"
}
`, stdlibExec(t)))
	first := l.readyPIDs(t, "default", 1, 15*time.Second)
	var wg sync.WaitGroup
	res := make([]result, 4)
	for i := range res {
		wg.Go(func() { res[i] = l.get("/sleep?ms=1000") })
	}
	most := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && most < 3; {
		most = max(most, len(l.lane(t, "default").PIDs("ready")))
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	for i, r := range res {
		if r.err != nil || r.status != 200 {
			t.Errorf("GET /sleep #%d: %s", i, r)
		}
	}
	if most < 2 {
		t.Fatalf("lane default had at most %d ready workers with 4 requests of 1 s waiting; want it to grow", most)
	}
	apps := first
	for _, p := range descendants(l.PID) {
		if exe(p) != lanesdBin && !contains(apps, p) {
			apps = append(apps, p)
		}
	}
	var kept []int
	waitFor(t, "lane default to shrink back to 1 worker", 15*time.Second, func() bool {
		kept = l.lane(t, "default").PIDs()
		return len(kept) == 1
	})
	// The lane stops the longest idle, which may be the first worker.
	var stopped []int
	for _, p := range apps {
		if !contains(kept, p) {
			stopped = append(stopped, p)
		}
	}
	if len(stopped) < most-1 {
		t.Errorf("apps %v, %v kept: want at least %d stopped", apps, kept, most-1)
	}
	waitGone(t, "the apps stopped for idleness", stopped, 10*time.Second)
	t.Logf("grew to %d ready workers; the apps %v stopped, %v kept", most, stopped, kept)
}

// TestExecMaxRSS: a Python worker that leaks past max_rss is recycled: a
// new app process replaces it and no request fails.
func TestExecMaxRSS(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers = 1
  max_workers = 1
  exec        = %s
  max_rss     = "60MB"
}
`, stdlibExec(t)))
	first := l.readyPIDs(t, "default", 1, 15*time.Second)[0]
	var rss []string
	recycled := func() bool {
		ps := l.lane(t, "default").PIDs("ready")
		return len(ps) == 1 && ps[0] != first
	}
	for i := 0; i < 6 && !recycled(); i++ {
		r := l.get("/leak?mb=30")
		if r.err != nil || r.status != 200 {
			t.Fatalf("GET /leak?mb=30 #%d: %s", i, r)
		}
		rss = append(rss, strings.TrimSpace(string(r.body)))
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, fmt.Sprintf("app %d (rss after each leak: %v) to be recycled", first, rss), 10*time.Second, recycled)
	waitGone(t, "the recycled app", []int{first}, 15*time.Second)
	// A worker that passed max_rss meanwhile goes too: the lane settles
	// with every app under it.
	waitFor(t, "every app of the lane under max_rss (60 MB)", 10*time.Second, func() bool {
		ws := l.lane(t, "default").Workers
		for _, w := range ws {
			if w.State != "ready" || w.RSS <= 0 || w.RSS > 60<<20 {
				return false
			}
		}
		return len(ws) == 1
	})
	for i := range 5 {
		if r := l.get("/fast"); r.err != nil || r.status != 200 {
			t.Errorf("GET /fast #%d after the recycle: %s", i, r)
		}
	}
	t.Logf("rss after each /leak?mb=30: %v; app %d recycled", rss, first)
}

// TestExecCrashLoop: a program that exits at once is backed off and
// shown as a crash loop, while the admin API and the default lane answer.
func TestExecCrashLoop(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers = 1
  max_workers = 1
  exec        = %s
}
lane "broken" {
  min_workers   = 1
  max_workers   = 1
  exec          = ["/bin/sh", "-c", "exit 3"]
  queue_timeout = "1s"
  map           = ["GET /broken/*"]
}
`, stdlibExec(t)))
	var ls *api.Lane
	waitFor(t, "lane broken to show a crash loop with back-off", 15*time.Second, func() bool {
		st, err := l.tryStatus()
		if err != nil {
			t.Errorf("admin API during the crash loop: %v", err)
			return false
		}
		ls = laneOf(t, st, "broken")
		return ls.CrashLoop && ls.BackoffMS > 0
	})
	if d := l.lane(t, "broken"); d.State != "crash_loop" {
		t.Errorf("lane broken: state %q; want crash_loop", d.State)
	}
	if !strings.Contains(ls.LastExit, "3") {
		t.Errorf("lane broken: last_exit %q; want it to name exit status 3", ls.LastExit)
	}
	t.Logf("lane broken: %d consecutive crashes, backoff %d ms, last exit %q", ls.Crashes, ls.BackoffMS, ls.LastExit)
	for i := range 10 {
		if r := l.get("/fast"); r.err != nil || r.status != 200 {
			t.Errorf("GET /fast #%d during the crash loop: %s", i, r)
		}
	}
	r := l.get("/broken/x")
	if r.err != nil || r.status < 500 || r.took > 5*time.Second {
		t.Errorf("GET /broken/x: want a 5xx within the queue_timeout, got %s", r)
	}
	// The back-off holds: the crashes do not grow as fast as respawns could.
	before := l.lane(t, "broken").Respawns
	time.Sleep(time.Second)
	if after := l.lane(t, "broken").Respawns; after-before > 3 {
		t.Errorf("lane broken respawned %d times in 1 s of a crash loop; want back-off", after-before)
	}
}

// TestExecNeverAccepts: a program that takes the socket and never accepts
// (no health_path, no ready: the lane trusts it at once) gets 504s at the
// request_timeout and is replaced each time.
func TestExecNeverAccepts(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers     = 1
  max_workers     = 1
  exec            = [%q, "-c", "import time; time.sleep(1e6)"]
  request_timeout = "1s"
}
`, python(t)))
	seen := map[int]bool{}
	for i := range 2 {
		before := l.readyPIDs(t, "default", 1, 15*time.Second)
		r := l.get("/fast")
		if r.err != nil || r.status != http.StatusGatewayTimeout {
			t.Fatalf("GET /fast #%d to a program that never accepts: want 504, got %s", i, r)
		}
		if r.took > 5*time.Second {
			t.Errorf("GET /fast #%d: 504 after %v; want soon after request_timeout (1s)", i, r.took)
		}
		waitGone(t, "the program that never accepted", before, 5*time.Second)
		_, added := replaced(t, l, "default", before, 1, 15*time.Second)
		for _, p := range append(before, added...) {
			seen[p] = true
		}
	}
	if len(seen) != 3 {
		t.Errorf("pids %v; want three different programs (two replaced)", seen)
	}
}

// TestExecBrokenResponses: garbage on the socket instead of HTTP gets 502
// and the worker is replaced, and the lane serves on; a chunked response
// passes whole; one cut mid-body reaches the client cut (never as a whole
// response) and its worker is replaced.
func TestExecBrokenResponses(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers = 2
  max_workers = 2
  exec        = %s
  health_path = "/healthz"
}
`, stdlibExec(t)))
	before := l.readyPIDs(t, "default", 2, 15*time.Second)

	r := l.get("/garbage")
	if r.err != nil || r.status != http.StatusBadGateway {
		t.Errorf("GET /garbage: want 502, got %s", r)
	}
	for i := range 10 {
		if r := l.get("/fast"); r.err != nil || r.status != 200 {
			t.Errorf("GET /fast #%d after the garbage: %s", i, r)
		}
	}
	// The worker is replaced once it has had a second to exit by itself
	// (then its end counts as a crash, not a kill).
	var ls *api.Lane
	waitFor(t, "the worker that wrote garbage to be killed and replaced", 10*time.Second, func() bool {
		ls = l.lane(t, "default")
		return ls.Killed >= 1
	})
	// How many apps saw the request: a retry on another worker kills two.
	t.Logf("GET /garbage reached %d app(s) (their log lines); killed %d", l.Log.Count(`"GET /garbage HTTP/1.1"`), ls.Killed)
	waitFor(t, "lane default back to 2 ready workers", 15*time.Second, func() bool {
		return len(l.lane(t, "default").PIDs("ready")) == 2
	})

	r = l.mustGet(t, "/chunked", 200)
	if want := "part 0\npart 1\npart 2\npart 3\npart 4\n"; string(r.body) != want {
		t.Errorf("GET /chunked: body %q, want %q", r.body, want)
	}

	pidsBefore := l.lane(t, "default").PIDs("ready")
	r = l.get("/cut")
	if r.err == nil && r.status == 200 {
		t.Errorf("GET /cut: a response cut mid-body reached the client whole: %s", r)
	}
	t.Logf("GET /cut: %s", r)
	// The app dies mid-body: its end is a crash (or, had it lived on, a
	// kill); either way a new worker takes its place.
	waitFor(t, "the worker that cut its response to be replaced", 10*time.Second, func() bool {
		ready := l.lane(t, "default").PIDs("ready")
		gone := 0
		for _, p := range pidsBefore {
			if !contains(ready, p) {
				gone++
			}
		}
		return len(ready) == 2 && gone > 0
	})
	l.mustGet(t, "/fast", 200)
	t.Logf("workers %v at start, %v now", before, l.lane(t, "default").PIDs())
}

// TestExecPortMode: exec_socket = "port" gives the app PORT instead of a
// socket; it serves there, on 127.0.0.1, and through the lanes.
func TestExecPortMode(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(`
lane "default" {
  min_workers = 1
  max_workers = 1
  exec        = %s
  exec_socket = "port"
}
`, stdlibExec(t)))
	pid := l.readyPIDs(t, "default", 1, 15*time.Second)[0]
	env := l.appEnv(t)
	port, err := strconv.Atoi(env["PORT"])
	if err != nil || port <= 0 {
		t.Fatalf("app's environment %v: want PORT", env)
	}
	for _, k := range []string{"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"} {
		if v, ok := env[k]; ok {
			t.Errorf("%s=%q in port mode; want none", k, v)
		}
	}
	if env["LANES_LANE"] != "default" {
		t.Errorf("app's environment %v: want LANES_LANE=default", env)
	}
	if p := l.getInt(t, "/pid"); p != pid {
		t.Errorf("/pid through the lanes: %d; the status shows %d", p, pid)
	}
	r := do(l.client, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/pid", port), nil, nil)
	if r.err != nil || r.status != 200 || strings.TrimSpace(string(r.body)) != strconv.Itoa(pid) {
		t.Errorf("GET /pid on 127.0.0.1:%d directly: %s; want %d", port, r, pid)
	}
}

// TestExecConfigErrors: lanesd -check reports each mistake of an exec lane
// as FILE:LINE with exit 1; a right exec config, and configs/python.hcl,
// pass with no app block.
func TestExecConfigErrors(t *testing.T) {
	t.Parallel()
	ex := stdlibExec(t)
	cases := []struct {
		name, lane, mention string
		lines               []int // where a diagnostic may be: the mistake is on line 6
	}{
		{"missing program", `exec = ["/no/such/program", "x"]`, "/no/such/program", nil},
		{"missing relative program", `exec = ["./no-such-program"]`, "no-such-program", nil},
		{"health_path", `health_path = "healthz"`, "health_path", nil},
		{"exec_socket", `exec_socket = "tcp"`, "tcp", nil},
		{"ready", `ready = "yes"`, "yes", nil},
		{"stop_signal", `stop_signal = "SIGFOO"`, "SIGFOO", nil},
		{"stop_timeout", `stop_timeout = "soon"`, "soon", nil},
		{"exec and command", `command = ["/bin/true"]`, "command", []int{4, 6}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			// Line 6 of the file holds the mistake.
			hcl := fmt.Sprintf("listen = \"127.0.0.1:0\"\nlane \"default\" {\n  min_workers = 1\n  exec = %s\n  max_workers = 1\n  %s\n}\n", ex, c.lane)
			if strings.HasPrefix(c.lane, "exec =") {
				hcl = fmt.Sprintf("listen = \"127.0.0.1:0\"\nlane \"default\" {\n  min_workers = 1\n\n  max_workers = 1\n  %s\n}\n", c.lane)
			}
			bad := filepath.Join(t.TempDir(), "bad.hcl")
			if err := os.WriteFile(bad, []byte(hcl), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runLanesd(t, newTmp(t), "-config", bad, "-check")
			out := stdout + stderr
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			want := c.lines
			if want == nil {
				want = []int{6}
			}
			lines := diagLines(t, out, bad)
			if !slices.ContainsFunc(lines, func(n int) bool { return contains(want, n) }) {
				t.Errorf("diagnostics at lines %v of bad.hcl; want one at line %v (%s)", lines, want, c.lane)
			}
			if !strings.Contains(out, c.mention) {
				t.Errorf("the diagnostics do not mention %q", c.mention)
			}
			if t.Failed() {
				t.Logf("bad.hcl:\n%s\noutput:\n%s", hcl, out)
			}
		})
	}

	t.Run("good", func(t *testing.T) {
		t.Parallel()
		good := filepath.Join(t.TempDir(), "good.hcl")
		hcl := fmt.Sprintf(`listen = "127.0.0.1:0"
lane "default" {
  exec         = %s
  exec_socket  = "port"
  health_path  = "/healthz"
  ready        = "notify"
  stop_signal  = "SIGINT"
  stop_timeout = "2s"
}
`, ex)
		if err := os.WriteFile(good, []byte(hcl), 0o600); err != nil {
			t.Fatal(err)
		}
		example, err := filepath.Abs("../configs/python.hcl")
		if err != nil {
			t.Fatal(err)
		}
		// A program path with a slash is taken from the config file's
		// directory, not from lanesd's (this package's).
		relDir := t.TempDir()
		script := fmt.Sprintf("#!/bin/sh\nexec %s %s\n", python(t), wsgiApp(t))
		if err := os.WriteFile(filepath.Join(relDir, "serve.sh"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		rel := filepath.Join(relDir, "rel.hcl")
		if err := os.WriteFile(rel, []byte("listen = \"127.0.0.1:0\"\nlane \"default\" {\n  exec = [\"./serve.sh\"]\n}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{good, example, rel} {
			code, stdout, stderr := runLanesd(t, newTmp(t), "-config", f, "-check")
			if code != 0 || strings.TrimSpace(stdout) != "OK" {
				t.Errorf("-check %s: exit %d, stdout %q, stderr %q; want 0 and OK", f, code, stdout, stderr)
			}
		}
	})
}
