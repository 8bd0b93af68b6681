package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// kill -9 of lanesd leaves no fetchd behind holding the cache_dir: a new
// lanesd on it starts fetchd at once and themes from disk.
func TestThemeLanesdKilled(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	up := contentUpstream(t)
	dir := t.TempDir()
	conf := themeConf{upstream: up.URL, themeURL: o.url(), cacheDir: filepath.Join(dir, "cache")}.hcl()
	a := startLanesdIn(t, dir, newTmp(t), conf)
	if r := a.get("/page"); !themed(r) {
		t.Fatalf("first lanesd: want themed, got %s", r)
	}
	old := a.status(t).Fetchd.PID
	a.signal(t, syscall.SIGKILL)
	a.wait(t, 5*time.Second)
	o.set(originDown)

	b := startLanesdIn(t, dir, newTmp(t), conf)
	waitFor(t, "the second lanesd's fetchd", 10*time.Second, func() bool {
		f := b.status(t).Fetchd
		return f.State == "ready" && f.PID > 0
	})
	if alive(old) {
		t.Errorf("the killed lanesd's fetchd %d is still alive", old)
	}
	if r := b.get("/page"); !themed(r) {
		t.Errorf("new lanesd, origin down: want themed from disk, got %s", r)
	}
	if strings.Contains(b.Log.String(), "fetchd exited; restarting") {
		t.Errorf("the new lanesd's fetchd had to be restarted")
	}
}

// A cache_dir badger cannot open is moved aside with a warning; fetchd
// starts empty and fetches the theme, never crash-looping on it.
func TestThemeCorruptCache(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	up := contentUpstream(t)
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	if err := os.MkdirAll(cache, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"MANIFEST", "000001.vlog", "KEYREGISTRY"} {
		if err := os.WriteFile(filepath.Join(cache, f), []byte(strings.Repeat("garbage\n", 64)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l := startLanesdIn(t, dir, newTmp(t), themeConf{upstream: up.URL, themeURL: o.url(), cacheDir: cache}.hcl())
	waitFor(t, "a themed page", 10*time.Second, func() bool { return themed(l.get("/page")) })
	if !strings.Contains(l.Log.String(), "moved it aside") {
		t.Errorf("no warning that the corrupt cache_dir was moved aside")
	}
	aside, _ := filepath.Glob(cache + ".corrupt-*")
	if len(aside) != 1 {
		t.Errorf("want the corrupt cache_dir moved aside once, found %v", aside)
	}
	if f := l.status(t).Fetchd; f.Restarts != 0 || f.State != "ready" || f.CacheEntries != 1 {
		t.Errorf("fetchd after a corrupt cache_dir: %+v", f)
	}
}

// A wedged fetchd (SIGSTOP) holds no request longer than the workers' ask
// timeout, and fails its health check: it is killed and replaced.
func TestThemeFetchdWedged(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	l := startLanesd(t, o.conf(t, themeConf{
		staleWait: "100ms", // ask timeout 200 ms
	}).hcl())
	if r := l.get("/page"); !themed(r) {
		t.Fatalf("first request: want themed, got %s", r)
	}
	pid := l.status(t).Fetchd.PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })

	stop := make(chan struct{})
	wait := l.load(8, "/page", stop)
	var now api.Fetchd
	waitFor(t, "the wedged fetchd to be replaced", 25*time.Second, func() bool {
		now = l.status(t).Fetchd
		return now.PID > 0 && now.PID != pid && now.State == "ready"
	})
	close(stop)
	rs := wait()
	for i, r := range rs {
		if !themed(r) {
			t.Fatalf("request %d with fetchd wedged: want themed (the worker's last copy), got %s", i, r)
		}
	}
	p50, p99, top := latencies(rs)
	t.Logf("fetchd wedged: %d requests, p50 %v p99 %v max %v, X-Theme %v; fetchd %d → %d, restarts %d",
		len(rs), p50, p99, top, xThemes(rs), pid, now.PID, now.Restarts)
	if top > 200*time.Millisecond+time.Second {
		t.Errorf("a request took %v with fetchd wedged, want < ask timeout + 1s", top)
	}
	if alive(pid) {
		t.Errorf("the wedged fetchd %d is still alive", pid)
	}
}

// A copy older than max_stale is no longer served: content goes out
// unthemed, and the operator is told.
func TestThemeMaxStale(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	l := startLanesd(t, o.conf(t, themeConf{
		minRefresh: "1s", maxStale: "2s",
	}).hcl())
	if r := l.get("/page"); !themed(r) {
		t.Fatalf("first request: want themed, got %s", r)
	}
	o.set(originDown)
	waitFor(t, "the copy to pass max_stale", 10*time.Second, func() bool {
		r := l.get("/page")
		if !themed(r) && !unthemed(r) {
			t.Fatalf("with the copy aging: %s", r)
		}
		return unthemed(r) && r.header.Get("X-Theme") == "unthemed"
	})
	if th := l.theme(t); th.State != "expired" || th.AgeS < 2 {
		t.Errorf("theme status past max_stale: %+v", th)
	}
	if !strings.Contains(l.Log.String(), "older than max_stale") {
		t.Errorf("no warning that the copy passed max_stale")
	}
	// The origin back: themed again.
	o.set(originServe)
	waitFor(t, "the theme after the origin's return", 70*time.Second, func() bool { return themed(l.get("/page")) })
}
