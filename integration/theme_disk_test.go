package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	old := a.themeStatus(t).Fetchd.PID
	a.signal(t, syscall.SIGKILL)
	a.wait(t, 5*time.Second)
	o.set(originDown)

	b := startLanesdIn(t, dir, newTmp(t), conf)
	waitFor(t, "the second lanesd's fetchd", 10*time.Second, func() bool {
		f := b.themeStatus(t).Fetchd
		return f.State == "ready" && f.PID > 0
	})
	if alive(old) {
		t.Errorf("the killed lanesd's fetchd %d is still alive", old)
	}
	if r := b.get("/page"); !themed(r) {
		t.Errorf("new lanesd, origin down: want themed from disk, got %s", r)
	}
	if strings.Contains(b.log.String(), "fetchd exited; restarting") {
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
	if !strings.Contains(l.log.String(), "moved it aside") {
		t.Errorf("no warning that the corrupt cache_dir was moved aside")
	}
	aside, _ := filepath.Glob(cache + ".corrupt-*")
	if len(aside) != 1 {
		t.Errorf("want the corrupt cache_dir moved aside once, found %v", aside)
	}
	if f := l.themeStatus(t).Fetchd; f.Restarts != 0 || f.State != "ready" || f.CacheEntries != 1 {
		t.Errorf("fetchd after a corrupt cache_dir: %+v", f)
	}
}
