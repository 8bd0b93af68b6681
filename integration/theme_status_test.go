package integration

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A themed response is a proper response of its own: its length, no
// validator of the unthemed body, the filter's time; the rest passes
// through. /api/status and /metrics show fetchd and the theme.
func TestThemeResponseAndStatus(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	l := startLanesd(t, o.conf(t, themeConf{}).hcl())

	r := l.get("/page")
	if !themed(r) {
		t.Fatalf("GET /page: want themed, got %s", r)
	}
	if cl := r.header.Get("Content-Length"); cl != strconv.Itoa(len(r.body)) {
		t.Errorf("Content-Length %q, body %d bytes", cl, len(r.body))
	}
	if et := r.header.Get("ETag"); et == contentETag {
		t.Errorf("themed response carries the upstream's strong ETag %s", et)
	}
	if x := r.header.Get("X-Theme"); x != "fresh" {
		t.Errorf("X-Theme %q, want fresh", x)
	}
	if strings.Contains(string(r.body), "placeholder") {
		t.Errorf("the theme's dropped placeholder shows")
	}
	if !strings.Contains(string(r.body), "<title>page /page</title>") {
		t.Errorf("the page's title did not replace the theme's:\n%.400s", r.body)
	}
	if f := serverTiming(r.header.Get("Server-Timing"), "filter"); f <= 0 {
		t.Errorf("Server-Timing %q: want a filter time > 0", r.header.Get("Server-Timing"))
	}

	// Not HTML, or HEAD: untouched.
	p := l.get("/plain")
	if p.status != http.StatusOK || p.header.Get("X-Theme") != "" || strings.Contains(string(p.body), themeMarker) {
		t.Errorf("GET /plain: want it untouched, got %s (X-Theme %q)", p, p.header.Get("X-Theme"))
	}
	h := do(l.client, http.MethodHead, l.URL("/page"), nil, nil)
	if h.err != nil || h.status != http.StatusOK || h.header.Get("X-Theme") != "" || h.header.Get("ETag") != contentETag {
		t.Errorf("HEAD /page: want the upstream's answer untouched, got %s %v", h, h.header)
	}

	st, raw := l.status(t), l.rawStatus(t)
	var f map[string]json.RawMessage
	if err := json.Unmarshal(raw["fetchd"], &f); err != nil {
		t.Fatalf("/api/status fetchd: %v", err)
	}
	for _, k := range []string{"pid", "state", "restarts", "cache_entries", "cache_bytes"} {
		if _, ok := f[k]; !ok {
			t.Errorf("/api/status fetchd has no %q: %s", k, raw["fetchd"])
		}
	}
	if st.Fetchd.PID <= 0 || !alive(st.Fetchd.PID) || st.Fetchd.State != "ready" ||
		st.Fetchd.CacheEntries != 1 || st.Fetchd.CacheBytes != int64(len(themePage(1))) {
		t.Errorf("/api/status fetchd: %+v (theme page is %d bytes)", st.Fetchd, len(themePage(1)))
	}
	var ths []map[string]json.RawMessage
	if err := json.Unmarshal(raw["themes"], &ths); err != nil || len(ths) != 1 {
		t.Fatalf("/api/status themes: %v: %s", err, raw["themes"])
	}
	for _, k := range []string{"name", "url", "state", "age_s", "version", "last_fetch",
		"fetches", "not_modified", "failures", "rejected", "stale_serves", "unthemed_serves"} {
		if _, ok := ths[0][k]; !ok {
			t.Errorf("/api/status theme has no %q: %s", k, raw["themes"])
		}
	}
	th := l.theme(t)
	if th.URL != o.url() || th.State != "fresh" || th.Version == "" || th.LastFetch == nil ||
		time.Since(*th.LastFetch) > time.Minute || th.AgeS < 0 || th.AgeS > 60 || th.Fetches < 1 {
		t.Errorf("/api/status theme: %+v", th)
	}

	m := l.metrics(t, "lanes_theme_")
	for _, name := range []string{"fetches", "not_modified", "failures", "rejected", "stale_serves", "unthemed_serves"} {
		key := `lanes_theme_` + name + `_total{theme="site"}`
		if _, ok := m[key]; !ok {
			t.Errorf("/metrics has no %s; theme samples: %v", key, m)
		}
	}
	if v := m[`lanes_theme_fetches_total{theme="site"}`]; v < 1 {
		t.Errorf("lanes_theme_fetches_total %v, want ≥ 1", v)
	}
}

// serverTiming returns the dur of metric name in a Server-Timing value, in
// milliseconds, or -1.
func serverTiming(v, name string) float64 {
	for part := range strings.SplitSeq(v, ",") {
		n, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if n != name {
			continue
		}
		for p := range strings.SplitSeq(params, ";") {
			if d, ok := strings.CutPrefix(strings.TrimSpace(p), "dur="); ok {
				f, err := strconv.ParseFloat(d, 64)
				if err == nil {
					return f
				}
			}
		}
	}
	return -1
}

// A second lanesd on the cache_dir of a running one is told so clearly,
// does not respawn fetchd in a loop, and the first keeps theming.
func TestThemeTwoLanesdOneCacheDir(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	up := contentUpstream(t)
	cache := filepath.Join(t.TempDir(), "cache")
	conf := themeConf{upstream: up.URL, themeURL: o.url(), cacheDir: cache}.hcl()
	a := startLanesd(t, conf)
	if r := a.get("/page"); !themed(r) {
		t.Fatalf("first lanesd: want themed, got %s", r)
	}

	dir := t.TempDir()
	b := startLanesdIn(t, dir, newTmp(t), conf)
	// -check on a live host (before a reload, as nginx -t): the running
	// lanesd's hold on cache_dir is a warning, not a failure.
	if out, code := runCheck(t, filepath.Join(dir, "lanes.hcl")); code != 0 || !strings.Contains(out, "warning: fetchd cache_dir in use") || !strings.Contains(out, "in use by another lanesd") {
		t.Errorf("-check on a cache_dir in use: exit %d, want 0 and a warning that says so:\n%s", code, out)
	}
	time.Sleep(4 * time.Second) // long enough for a crash loop to show
	if !strings.Contains(b.Log.String(), "in use by another lanesd") {
		t.Errorf("the second lanesd did not say its cache_dir is in use")
	}
	if n := strings.Count(b.Log.String(), "fetchd exited; restarting") + strings.Count(b.Log.String(), "fetchd failed to start"); n > 0 {
		t.Errorf("the second lanesd restarted fetchd %d times on a cache_dir in use", n)
	}
	if r := b.get("/page"); !unthemed(r) {
		t.Errorf("second lanesd: want its content unthemed, got %s", r)
	} else if x := r.header.Get("X-Theme"); x != "unthemed" {
		t.Errorf("second lanesd: X-Theme %q, want unthemed", x)
	}
	if st := b.status(t); !strings.Contains(st.Fetchd.LastError, "in use") {
		t.Errorf("second lanesd's /api/status fetchd: %+v; want the cause in last_error", st.Fetchd)
	}
	if r := a.get("/page"); !themed(r) {
		t.Errorf("first lanesd after the second started: want themed, got %s", r)
	}
	if a.theme(t).State != "fresh" {
		t.Errorf("first lanesd's theme: %+v", a.theme(t))
	}
	if strings.Contains(b.Log.String(), "<nil>") {
		t.Errorf("the second lanesd's warnings name no place as <nil>")
	}

	// Once the first lets go of the cache_dir, the second starts its fetchd.
	a.signal(t, syscall.SIGTERM)
	a.wait(t, 15*time.Second)
	waitFor(t, "the second lanesd's fetchd", 15*time.Second, func() bool {
		f := b.status(t).Fetchd
		return f.State == "ready" && f.PID > 0
	})
	waitFor(t, "the second lanesd to theme", 5*time.Second, func() bool { return themed(b.get("/page")) })
}
