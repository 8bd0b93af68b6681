package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// A theme with no copy anywhere is fetched once however many requests ask
// for it at once; a fresh copy is served without asking the origin.
func TestThemeMissSingleFlight(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	o.set(origin500) // no copy at start: the start check and prefetch fail
	up := contentUpstream(t)
	l := startLanesd(t, themeConf{
		upstream: up.URL, themeURL: o.url(), cacheDir: filepath.Join(t.TempDir(), "cache"),
		staleWait: "1s", // workers wait up to 2 s for fetchd: the whole miss
	}.hcl())
	waitFor(t, "the prefetch to fail", 10*time.Second, func() bool { return l.theme(t).Failures >= 1 })
	time.Sleep(1200 * time.Millisecond) // past the 1 s back-off of the first failure

	o.set(originHang) // the miss's fetch waits until all askers are in
	base := o.hits.Load()
	var rs []result
	done := make(chan struct{})
	go func() { rs = l.burst(50, "/page"); close(done) }()
	waitFor(t, "the miss's fetch", 5*time.Second, func() bool { return o.hits.Load() > base })
	time.Sleep(300 * time.Millisecond)
	o.set(originServe)
	<-done

	if n := o.hits.Load() - base; n != 1 {
		t.Errorf("50 concurrent requests on a miss made %d origin fetches, want 1", n)
	}
	for i, r := range rs {
		if !themed(r) {
			t.Fatalf("request %d on a miss: want a themed 200, got %s", i, r)
		}
	}
	t.Logf("miss: X-Theme %v", xThemes(rs))

	base = o.hits.Load()
	rs = l.burst(50, "/page")
	if n := o.hits.Load() - base; n != 0 {
		t.Errorf("50 requests on a fresh copy made %d origin fetches, want 0", n)
	}
	for i, r := range rs {
		if !themed(r) || r.header.Get("X-Theme") != "fresh" {
			t.Fatalf("request %d on a fresh copy: want a themed 200 with X-Theme fresh, got %s (X-Theme %q)",
				i, r, r.header.Get("X-Theme"))
		}
	}
}

// A stale copy is revalidated once under load (a 304 refreshes its age),
// and a site under steady load asks the origin at most about once per
// min_refresh.
func TestThemeStaleRefreshUnderLoad(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	l := startLanesd(t, o.conf(t, themeConf{
		minRefresh: "1s",
	}).hcl())
	if r := l.get("/page"); !themed(r) {
		t.Fatalf("first request: want themed, got %s", r)
	}
	before := l.theme(t)
	time.Sleep(1200 * time.Millisecond) // the copy is stale now

	base, nm := o.hits.Load(), o.notModified.Load()
	rs := l.burst(50, "/page")
	for i, r := range rs {
		if !themed(r) {
			t.Fatalf("request %d on a stale copy: want themed, got %s", i, r)
		}
	}
	if n := o.hits.Load() - base; n != 1 {
		t.Errorf("50 concurrent requests on a stale copy made %d origin fetches, want 1", n)
	}
	if n := o.notModified.Load() - nm; n != 1 {
		t.Errorf("the refresh got %d 304 answers, want 1 (If-None-Match sent: %d)", n, o.conditional.Load())
	}
	after := l.theme(t)
	if after.NotModified < before.NotModified+1 {
		t.Errorf("status not_modified %d → %d, want one more", before.NotModified, after.NotModified)
	}
	if after.Version != before.Version {
		t.Errorf("a 304 changed the version %q → %q", before.Version, after.Version)
	}
	if after.AgeS >= 1 || after.State != "fresh" {
		t.Errorf("after a 304 the copy is %s, %.2fs old; want fresh, younger than min_refresh", after.State, after.AgeS)
	}

	// Steady load: fetches stay near one per min_refresh.
	const span = 4 * time.Second
	base = o.hits.Load()
	stop := make(chan struct{})
	wait := l.load(8, "/page", stop)
	time.Sleep(span)
	close(stop)
	rs = wait()
	n := o.hits.Load() - base
	for i, r := range rs {
		if !themed(r) {
			t.Fatalf("request %d under load: want themed, got %s", i, r)
		}
	}
	t.Logf("steady load: %d requests in %v, %d origin fetches (%.0f/min at min_refresh 1s), X-Theme %v",
		len(rs), span, n, float64(n)*float64(time.Minute)/float64(span), xThemes(rs))
	if limit := int64(span/time.Second) + 2; n > limit {
		t.Errorf("%d origin fetches in %v of load with min_refresh 1s, want at most %d", n, span, limit)
	}
}

// With the theme origin hung, requests get the stale copy within
// stale_wait, and the hung origin is asked once.
func TestThemeOriginHung(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	const staleWait = 200 * time.Millisecond
	l := startLanesd(t, o.conf(t, themeConf{
		minRefresh: "1s", staleWait: staleWait.String(), fetchTimeout: "4s",
	}).hcl())
	if r := l.get("/page"); !themed(r) {
		t.Fatalf("first request: want themed, got %s", r)
	}
	o.set(originHang)
	time.Sleep(1200 * time.Millisecond) // the copy is stale now

	base := o.hits.Load()
	stop := make(chan struct{})
	wait := l.load(16, "/page", stop)
	time.Sleep(2500 * time.Millisecond)
	close(stop)
	rs := wait()
	for i, r := range rs {
		if !themed(r) {
			t.Fatalf("request %d with the origin hung: want themed (stale), got %s", i, r)
		}
	}
	p50, p99, top := latencies(rs)
	t.Logf("origin hung: %d requests, p50 %v p99 %v max %v, X-Theme %v",
		len(rs), p50, p99, top, xThemes(rs))
	// Every client kept going (a machine-speed-free bound: the latency
	// bound below is the promise).
	if len(rs) < 2*16 {
		t.Errorf("only %d requests from 16 clients in 2.5 s with the origin hung", len(rs))
	}
	if limit := staleWait + time.Second; top > limit {
		t.Errorf("with the origin hung a request took %v, want < stale_wait + 1s = %v", top, limit)
	}
	// stale_wait counts from the refresh's start: only the requests of its
	// first stale_wait wait for it (16 clients: about 16 of them).
	slow := 0
	for _, r := range rs {
		if r.took >= staleWait {
			slow++
		}
	}
	if slow > 48 {
		t.Errorf("%d of %d requests waited stale_wait or longer with the refresh hung, want only the first few", slow, len(rs))
	}
	if n := o.hits.Load() - base; n != 1 {
		t.Errorf("the hung origin was asked %d times within fetch_timeout, want 1", n)
	}
	if c := xThemes(rs)["stale"]; c == 0 {
		t.Errorf("no response was marked X-Theme: stale: %v", xThemes(rs))
	}
	// fetch_timeout ends the hung fetch: a failure, shown in the status.
	waitFor(t, "the hung fetch to count as a failure", 10*time.Second, func() bool {
		th := l.theme(t)
		return th.Failures >= 1 && th.LastError != ""
	})
	th := l.theme(t)
	if th.State != "stale" || th.StaleServes == 0 {
		t.Errorf("status after the hung fetch: state %q, stale_serves %d; want stale and > 0", th.State, th.StaleServes)
	}
}

// No copy and the origin down: content goes out unthemed at once, the
// operator is told once, and the origin is asked only now and then.
func TestThemeNoCacheOriginDown(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	o.set(originDown)
	l := startLanesd(t, o.conf(t, themeConf{
		fetchTimeout: "5s",
	}).hcl())
	if !strings.Contains(l.Log.String(), "Theme not available") {
		t.Errorf("no warning at start about the theme that cannot be had")
	}

	const span = 3 * time.Second
	base := o.hits.Load()
	stop := make(chan struct{})
	wait := l.load(8, "/page", stop)
	time.Sleep(span)
	close(stop)
	rs := wait()
	n := o.hits.Load() - base
	for i, r := range rs {
		if !unthemed(r) || r.header.Get("X-Theme") != "unthemed" {
			t.Fatalf("request %d: want the content unthemed with X-Theme unthemed, got %s (X-Theme %q)",
				i, r, r.header.Get("X-Theme"))
		}
	}
	p50, p99, top := latencies(rs)
	t.Logf("no theme: %d requests, p50 %v p99 %v max %v; %d origin requests in %v",
		len(rs), p50, p99, top, n, span)
	if top > 5*time.Second {
		t.Errorf("a request waited %v for a theme that cannot be had, want < fetch_timeout 5s", top)
	}
	// Back-off 1s, 2s, 4s...: three asks in 3 s at most, and the prefetch
	// if it came late.
	if n > 4 {
		t.Errorf("the down origin was asked %d times in %v under load, want at most 4", n, span)
	}
	th := l.theme(t)
	if th.State != "unthemed" || th.Failures == 0 || th.LastError == "" || th.UnthemedServes == 0 {
		t.Errorf("status: %+v; want state unthemed, failures, last_error and unthemed_serves", th)
	}
	if c := strings.Count(l.Log.String(), "no copy of the theme; serving unthemed"); c != 1 {
		t.Errorf("the unthemed warning was logged %d times, want once", c)
	}
}

// An origin's error page or a page without the rules' selectors never
// replaces the last good theme; the origin's recovery brings the new one.
func TestThemeRejectKeepsLastGood(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	l := startLanesd(t, o.conf(t, themeConf{
		minRefresh: "500ms",
	}).hcl())
	if r := l.get("/page"); !themed(r) || !strings.Contains(string(r.body), themeMarker+" v1") {
		t.Fatalf("first request: want themed with v1, got %s", r)
	}
	good := l.theme(t).Version
	o.bump() // what the origin would serve now, if it served

	check := func(what string, counted func(*api.Theme) uint64) {
		t.Helper()
		waitFor(t, what+" to be counted", 10*time.Second, func() bool {
			if r := l.get("/page"); !themed(r) || !strings.Contains(string(r.body), themeMarker+" v1") {
				t.Fatalf("with the origin answering %s: want the last good theme (v1), got %s", what, r)
			}
			return counted(l.theme(t)) >= 1
		})
		th := l.theme(t)
		if th.Version != good || th.LastError == "" {
			t.Errorf("after %s: version %q (want %q), last_error %q (want one)", what, th.Version, good, th.LastError)
		}
	}
	o.set(origin500)
	check("500", func(th *api.Theme) uint64 { return th.Failures })
	o.set(originNoSelect)
	check("a page without the selectors", func(th *api.Theme) uint64 { return th.Rejected })
	if !strings.Contains(l.theme(t).LastError, "matches nothing") {
		t.Errorf("last_error %q does not say why the page was rejected", l.theme(t).LastError)
	}

	o.set(originServe)
	waitFor(t, "the new theme after the origin recovers", 15*time.Second, func() bool {
		r := l.get("/page")
		return themed(r) && strings.Contains(string(r.body), themeMarker+" v2")
	})
	if th := l.theme(t); th.Version == good || th.LastError != "" {
		t.Errorf("after recovery: version %q (old %q), last_error %q", th.Version, good, th.LastError)
	}
}

// With the origin down, a restarted lanesd themes from its cache on disk;
// -check finds the cached copy good enough.
func TestThemeFromDiskAfterRestart(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	up := contentUpstream(t)
	dir := t.TempDir()
	conf := themeConf{
		upstream: up.URL, themeURL: o.url(), cacheDir: filepath.Join(dir, "cache"),
		minRefresh: "1s",
	}.hcl()
	a := startLanesdIn(t, dir, newTmp(t), conf)
	if r := a.get("/page"); !themed(r) {
		t.Fatalf("first lanesd: want themed, got %s", r)
	}
	a.signal(t, syscall.SIGTERM)
	if code := a.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("first lanesd exited %d", code)
	}
	o.srv.Close() // the origin is gone: connections are refused

	if out, code := runCheck(t, filepath.Join(dir, "lanes.hcl")); code != 0 || !strings.Contains(out, "OK") {
		t.Errorf("-check with the theme cached and its origin down: exit %d:\n%s", code, out)
	}

	b := startLanesdIn(t, dir, newTmp(t), conf)
	for range 5 {
		r := b.get("/page")
		if !themed(r) {
			t.Fatalf("restarted lanesd, origin down: want themed from disk, got %s", r)
		}
		if x := r.header.Get("X-Theme"); x != "stale" && x != "fresh" {
			t.Errorf("X-Theme %q, want stale or fresh", x)
		}
	}
	if th := b.theme(t); th.State == "unthemed" || th.Version == "" {
		t.Errorf("restarted lanesd's theme status: %+v", th)
	}
}

// kill -9 of fetchd under load loses no request, and fetchd comes back
// (a new pid, restarts counted) with its cache.
func TestThemeFetchdKilledUnderLoad(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	l := startLanesd(t, o.conf(t, themeConf{
		minRefresh: "1s",
	}).hcl())
	if r := l.get("/page"); !themed(r) {
		t.Fatalf("first request: want themed, got %s", r)
	}
	st := l.status(t)
	pid, version := st.Fetchd.PID, l.theme(t).Version
	if pid <= 0 || st.Fetchd.State != "ready" {
		t.Fatalf("fetchd status: %+v", st.Fetchd)
	}
	o.set(originDown) // whatever the new fetchd serves, it has from disk

	stop := make(chan struct{})
	wait := l.load(16, "/page", stop)
	time.Sleep(300 * time.Millisecond)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var now api.Fetchd
	waitFor(t, "a new fetchd", 15*time.Second, func() bool {
		now = l.status(t).Fetchd
		return now.PID > 0 && now.PID != pid && now.State == "ready" && now.Restarts >= 1
	})
	time.Sleep(500 * time.Millisecond) // load on the new fetchd too
	close(stop)
	rs := wait()
	for i, r := range rs {
		if !themed(r) {
			t.Fatalf("request %d around fetchd's kill: want themed (fresh or stale), got %s", i, r)
		}
	}
	p50, p99, top := latencies(rs)
	t.Logf("fetchd killed: %d requests, all themed, p50 %v p99 %v max %v, X-Theme %v; fetchd %d → %d",
		len(rs), p50, p99, top, xThemes(rs), pid, now.PID)
	th := l.theme(t)
	if th.Version != version || th.State == "unthemed" {
		t.Errorf("new fetchd's theme: version %q state %q, want the cached %q", th.Version, th.State, version)
	}
	// The status of a just-restarted fetchd may not reach it yet.
	waitFor(t, "the new fetchd's cache in the status", 5*time.Second, func() bool {
		now = l.status(t).Fetchd
		return now.CacheEntries >= 1 && now.CacheBytes > 0
	})
	if r := l.get("/page"); !themed(r) {
		t.Errorf("after fetchd's return: want themed, got %s", r)
	}
}

// -check fails with the url attribute's file and line when a theme can be
// neither fetched nor found in the cache, and passes when it can be fetched.
func TestThemeCheck(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "lanes.hcl")
	write := func(themeURL string) int {
		t.Helper()
		conf := fullConfig(themeConf{
			upstream: "http://127.0.0.1:9", themeURL: themeURL, cacheDir: filepath.Join(dir, "cache"),
			fetchTimeout: "2s",
		}.hcl())
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(conf, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "url ") {
				return i + 1
			}
		}
		t.Fatal("no url line")
		return 0
	}

	o.set(originDown)
	line := write(o.url())
	out, code := runCheck(t, path)
	if code != 1 {
		t.Errorf("-check, origin down and no cache: exit %d, want 1:\n%s", code, out)
	}
	if want := "lanes.hcl:" + strconv.Itoa(line) + ","; !strings.Contains(out, want) || !strings.Contains(out, "Theme not available") {
		t.Errorf("-check output does not point at the url attribute (%s):\n%s", want, out)
	}

	o.set(origin500)
	if out, code := runCheck(t, path); code != 1 {
		t.Errorf("-check, origin answering 500: exit %d, want 1:\n%s", code, out)
	}
	o.set(originNoSelect)
	if out, code := runCheck(t, path); code != 1 || !strings.Contains(out, "matches nothing") {
		t.Errorf("-check, origin's page without the selectors: exit %d, want 1 and why:\n%s", code, out)
	}
	o.set(originServe)
	if out, code := runCheck(t, path); code != 0 || !strings.Contains(out, "OK") {
		t.Errorf("-check, theme fetchable: exit %d, want 0 and OK:\n%s", code, out)
	}
}

// A miss on a slow origin: requests do not wait past the workers' ask
// timeout (2 × stale_wait): they go out unthemed, and themed once the one
// fetch lands.
func TestThemeMissSlowOrigin(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	o.set(origin500)
	l := startLanesd(t, o.conf(t, themeConf{
		staleWait: "100ms", fetchTimeout: "5s",
	}).hcl())
	waitFor(t, "the prefetch to fail", 10*time.Second, func() bool { return l.theme(t).Failures >= 1 })
	time.Sleep(1200 * time.Millisecond) // past the back-off
	o.set(originHang)
	base := o.hits.Load()
	go func() { time.Sleep(time.Second); o.set(originServe) }()
	stop := make(chan struct{})
	wait := l.load(8, "/page", stop)
	time.Sleep(3 * time.Second)
	close(stop)
	rs := wait()
	p50, p99, top := latencies(rs)
	t.Logf("miss on a slow origin: %d requests, p50 %v p99 %v max %v, X-Theme %v, %d origin fetches",
		len(rs), p50, p99, top, xThemes(rs), o.hits.Load()-base)
	for i, r := range rs {
		if !themed(r) && !unthemed(r) {
			t.Fatalf("request %d: %s", i, r)
		}
	}
	if top > time.Second {
		t.Errorf("a request waited %v on a miss, want ≤ 2 × stale_wait + slack", top)
	}
	if !themed(rs[len(rs)-1]) {
		t.Errorf("2 s after the origin answered, requests are still unthemed")
	}
	if n := o.hits.Load() - base; n != 1 {
		t.Errorf("%d origin fetches, want 1", n)
	}
	if strings.Contains(l.Log.String(), "fetchd unreachable") {
		t.Errorf("a fetchd busy with a slow fetch was logged as unreachable")
	}
}
