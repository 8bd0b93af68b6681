package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// What the theme tests' pages hold, to tell a themed page from an
// unthemed one.
const (
	themeMarker   = "THEME-CHROME"
	contentMarker = "CONTENT-BODY"
	contentETag   = `"content-v1"` // the upstream's strong ETag of the unthemed page
)

// Theme origin modes: what themeOrigin answers for /theme.html.
const (
	originServe    = "serve"    // the theme, 200, ETag; a matching If-None-Match gets 304
	originHang     = "hang"     // nothing, until the mode changes or the client gives up
	origin500      = "500"      // an error page
	originNoSelect = "noselect" // a 200 HTML page without the rules' selectors
	originDown     = "down"     // the connection is closed without an answer
	originHuge     = "huge"     // a usable but huge theme: 400,000 elements in 3.2 MB
)

// themeOrigin is the theme's origin server in the theme tests: it counts
// the theme requests it gets and answers as its mode says.
type themeOrigin struct {
	srv *httptest.Server

	mu      sync.Mutex
	mode    string
	version int // the theme page's version: part of its body and ETag

	hits        atomic.Int64 // requests for /theme.html, whatever the answer
	conditional atomic.Int64 // of which carried If-None-Match
	notModified atomic.Int64 // of which were answered 304
}

func newThemeOrigin(t *testing.T) *themeOrigin {
	t.Helper()
	o := &themeOrigin{mode: originServe, version: 1}
	o.srv = httptest.NewServer(http.HandlerFunc(o.serve))
	// Cleanups run last-in first-out: hung requests are let go first.
	t.Cleanup(o.srv.Close)
	t.Cleanup(func() { o.set(originServe) })
	return o
}

func (o *themeOrigin) url() string { return o.srv.URL + "/theme.html" }

func (o *themeOrigin) set(mode string) {
	o.mu.Lock()
	o.mode = mode
	o.mu.Unlock()
}

func (o *themeOrigin) state() (string, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mode, o.version
}

// bump changes the theme page (a new version).
func (o *themeOrigin) bump() {
	o.mu.Lock()
	o.version++
	o.mu.Unlock()
}

func themePage(version int) string {
	return fmt.Sprintf(`<!DOCTYPE html>
<html><head><title>theme</title><meta name="theme-version" content="%d"></head>
<body><header>%s v%d</header>
<div id="content"><p class="placeholder">placeholder</p></div>
<footer>%s footer</footer></body></html>
`, version, themeMarker, version, themeMarker)
}

func (o *themeOrigin) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/theme.html" {
		http.NotFound(w, r)
		return
	}
	o.hits.Add(1)
	if r.Header.Get("If-None-Match") != "" {
		o.conditional.Add(1)
	}
	mode, _ := o.state()
	for mode == originHang {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
		mode, _ = o.state()
	}
	_, version := o.state()
	switch mode {
	case originServe:
		etag := fmt.Sprintf(`"theme-v%d"`, version)
		if r.Header.Get("If-None-Match") == etag {
			o.notModified.Add(1)
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("ETag", etag)
		io.WriteString(w, themePage(version))
	case origin500:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "<html><body><h1>Internal Server Error</h1></body></html>")
	case originNoSelect:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<html><head><title>Down for maintenance</title></head><body><h1>Back soon</h1></body></html>")
	case originHuge:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, strings.Replace(themePage(version+1000), "<footer>", strings.Repeat("<i>x</i>", 400_000)+"<footer>", 1))
	case originDown:
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
	}
}

// contentUpstream is the site behind lanes: /page is an HTML page with a
// strong ETag, /plain a text one.
func contentUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/plain":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "plain "+contentMarker)
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("ETag", contentETag)
			fmt.Fprintf(w, `<!DOCTYPE html>
<html><head><title>page %s</title></head>
<body><div id="content"><h1>%s</h1><p>%s</p></div></body></html>
`, r.URL.Path, contentMarker, strings.Repeat("lorem ipsum ", 200))
		}
	}))
	t.Cleanup(up.Close)
	return up
}

// themeConf is what a theme test's config sets.
// conf completes c with o as its theme origin, a content upstream of its
// own and a fresh cache_dir: the setup most theme tests share.
func (o *themeOrigin) conf(t *testing.T, c themeConf) themeConf {
	t.Helper()
	c.upstream, c.themeURL, c.cacheDir = contentUpstream(t).URL, o.url(), filepath.Join(t.TempDir(), "cache")
	return c
}

type themeConf struct {
	upstream     string
	themeURL     string
	cacheDir     string
	fetchTimeout string // default 5s
	minRefresh   string // default 60s
	staleWait    string // default 200ms
	maxStale     string // default 720h
	extra        string // more top-level config
}

func (c themeConf) hcl() string {
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	return fmt.Sprintf(`debug_headers = true
app {
  upstream = %q
  theme    = "site"
}
theme "site" {
  url = %q
  rule "replace" {
    theme   = "#content"
    content = "#content"
  }
  rule "title" {}
  rule "drop" {
    theme = ".placeholder"
  }
}
fetchd {
  cache_dir     = %q
  fetch_timeout = %q
  min_refresh   = %q
  stale_wait    = %q
  max_stale     = %q
}
lane "default" {
  min_workers     = 2
  max_workers     = 2
  concurrency     = 40
  max_queue       = 400
  request_timeout = "20s"
}
%s`, c.upstream, c.themeURL, c.cacheDir, def(c.fetchTimeout, "5s"), def(c.minRefresh, "60s"),
		def(c.staleWait, "200ms"), def(c.maxStale, "720h"), c.extra)
}

// --- status ---

// rawStatus is /api/status undecoded, to see that every field of the
// contract is there.
func (l *lanesd) rawStatus(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := l.API.Call(context.Background(), http.MethodGet, "/api/status", nil, &raw); err != nil {
		t.Fatalf("GET /api/status: %v", err)
	}
	return raw
}

// theme returns the site theme's status.
func (l *lanesd) theme(t *testing.T) *api.Theme {
	t.Helper()
	st := l.status(t)
	th := st.Theme("site")
	if th == nil {
		t.Fatalf("no theme \"site\" in /api/status: %+v", st)
	}
	return th
}

// metrics returns /metrics's samples whose name starts with prefix, keyed
// by the sample's name and labels as written.
func (l *lanesd) metrics(t *testing.T, prefix string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(l.metricsText(t)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// --- requests ---

// themed reports whether r is a 200 with the page in the theme.
func themed(r result) bool {
	return r.err == nil && r.status == http.StatusOK &&
		strings.Contains(string(r.body), themeMarker) && strings.Contains(string(r.body), contentMarker)
}

// unthemed reports whether r is a 200 with the page as the upstream sent it.
func unthemed(r result) bool {
	return r.err == nil && r.status == http.StatusOK &&
		!strings.Contains(string(r.body), themeMarker) && strings.Contains(string(r.body), contentMarker)
}

// burst sends n GETs of path at once and returns the results in order.
func (l *lanesd) burst(n int, path string) []result {
	out := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			out[i] = l.get(path)
		})
	}
	close(start)
	wg.Wait()
	return out
}

// load keeps conc clients sending GETs of path until stop is closed, and
// returns every result.
func (l *lanesd) load(conc int, path string, stop <-chan struct{}) func() []result {
	var mu sync.Mutex
	var out []result
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := l.get(path)
				mu.Lock()
				out = append(out, r)
				mu.Unlock()
			}
		})
	}
	return func() []result {
		wg.Wait()
		return out
	}
}

// latencies returns the p50, p99 and max of rs's times.
func latencies(rs []result) (p50, p99, top time.Duration) {
	if len(rs) == 0 {
		return 0, 0, 0
	}
	d := make([]time.Duration, len(rs))
	for i, r := range rs {
		d[i] = r.took
	}
	slices.Sort(d)
	return d[len(d)/2], d[min(len(d)-1, len(d)*99/100)], d[len(d)-1]
}

// xThemes counts the X-Theme values of rs.
func xThemes(rs []result) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		m[r.header.Get("X-Theme")]++
	}
	return m
}

// runCheck runs lanesd -check on the config at path.
func runCheck(t *testing.T, path string) (string, int) {
	t.Helper()
	cmd := exec.Command(lanesdBin, "-config", path, "-check")
	cmd.Dir = filepath.Dir(path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return string(out), cmd.ProcessState.ExitCode()
}
