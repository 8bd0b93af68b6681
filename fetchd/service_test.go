package fetchd

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
)

const goodPage = `<html><head><title>Theme</title></head><body><div id="content">placeholder</div></body></html>`

var rules = []config.ThemeRule{
	{Kind: "replace", Theme: "#content", Content: "#content"},
	{Kind: "title"},
	{Kind: "drop", Theme: ".absent"},
}

// testOrigin is a theme origin whose answer the test changes as it goes.
type testOrigin struct {
	*httptest.Server
	hits  atomic.Int64
	mu    sync.Mutex
	page  string
	ctype string
	code  int
	etag  string
	delay time.Duration
	hang  chan struct{} // non-nil: requests block until it closes
}

func newTestOrigin(t *testing.T) *testOrigin {
	o := &testOrigin{page: goodPage, ctype: "text/html; charset=utf-8", code: 200}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		o.mu.Lock()
		page, ctype, code, etag, delay, hang := o.page, o.ctype, o.code, o.etag, o.delay, o.hang
		o.mu.Unlock()
		if hang != nil {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		time.Sleep(delay)
		if etag != "" {
			w.Header().Set("ETag", etag)
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(code)
		fmt.Fprint(w, page)
	}))
	t.Cleanup(func() {
		o.mu.Lock()
		if o.hang != nil {
			close(o.hang)
			o.hang = nil
		}
		o.mu.Unlock()
		o.Close()
	})
	return o
}

func (o *testOrigin) set(f func(o *testOrigin)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o)
}

func settings(url string) Settings {
	return Settings{
		Fetchd: config.Fetchd{
			Workers:      2,
			FetchTimeout: 5 * time.Second,
			MinRefresh:   time.Hour,
			StaleWait:    100 * time.Millisecond,
			MaxStale:     720 * time.Hour,
		},
		Themes: []config.Theme{{Name: "main", URL: url, Rules: rules}},
	}
}

func testLog(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start opens a cache in dir and a Service on it; both close with the test.
func start(t *testing.T, dir string, set Settings, opts ...func(*Options)) *Service {
	t.Helper()
	c, err := OpenCache(dir, CacheOptions{Log: testLog(t), MoveCorrupt: true})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Log: testLog(t)}
	for _, f := range opts {
		f(&o)
	}
	s, err := NewService(c, set, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Close(context.Background())
		_ = c.Close()
	})
	return s
}

func stop(t *testing.T, s *Service) {
	t.Helper()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.cache.Close(); err != nil {
		t.Fatal(err)
	}
}

func ask(t *testing.T, s *Service) shared.ThemeDoc {
	t.Helper()
	doc, err := s.Theme(context.Background(), "main", "")
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func themeStats(s *Service) map[string]uint64 {
	th := s.Themes()[0]
	return map[string]uint64{
		"fetches": th.Fetches, "not_modified": th.NotModified, "failures": th.Failures,
		"rejected": th.Rejected, "stale": th.StaleServes, "unthemed": th.UnthemedServes,
	}
}

func TestMissSharesOneFetch(t *testing.T) {
	o := newTestOrigin(t)
	o.set(func(o *testOrigin) { o.delay = 200 * time.Millisecond })
	s := start(t, t.TempDir(), settings(o.URL))

	var wg sync.WaitGroup
	docs := make([]shared.ThemeDoc, 50)
	for i := range docs {
		wg.Go(func() { docs[i] = ask(t, s) })
	}
	wg.Wait()
	if n := o.hits.Load(); n != 1 {
		t.Errorf("origin fetched %d times for 50 concurrent askers, want 1", n)
	}
	for i, d := range docs {
		if d.State != shared.ThemeFresh || string(d.HTML) != goodPage || d.Version == "" {
			t.Fatalf("asker %d got state %q, %d bytes, version %q", i, d.State, len(d.HTML), d.Version)
		}
	}

	// Fresh: no more fetches.
	for range 20 {
		if d := ask(t, s); d.State != shared.ThemeFresh {
			t.Fatalf("state %q, want fresh", d.State)
		}
	}
	if n := o.hits.Load(); n != 1 {
		t.Errorf("fresh copy: origin fetched %d times, want 1", n)
	}
}

func TestStaleCopyOneRefresh(t *testing.T) {
	o := newTestOrigin(t)
	set := settings(o.URL)
	set.Fetchd.MinRefresh = 50 * time.Millisecond
	set.Fetchd.StaleWait = 2 * time.Second
	s := start(t, t.TempDir(), set)
	first := ask(t, s)
	// A fresh answer says until when: the fetch plus min_refresh, the
	// window in which workers need not ask again.
	if want := first.Fetched.Add(set.Fetchd.MinRefresh); first.State != shared.ThemeFresh || !first.FreshUntil.Equal(want) {
		t.Fatalf("first answer: state %q, fresh until %v; want fresh until %v", first.State, first.FreshUntil, want)
	}
	time.Sleep(100 * time.Millisecond)
	o.set(func(o *testOrigin) {
		o.delay = 200 * time.Millisecond
		o.page = strings.Replace(goodPage, "Theme", "Theme v2", 1)
	})

	var wg sync.WaitGroup
	var fresh atomic.Int64
	for range 50 {
		wg.Go(func() {
			if d := ask(t, s); d.State == shared.ThemeFresh && d.Version != first.Version {
				fresh.Add(1)
			}
		})
	}
	wg.Wait()
	if n := o.hits.Load(); n != 2 {
		t.Errorf("origin fetched %d times, want 2 (first fetch and one refresh)", n)
	}
	if fresh.Load() != 50 {
		t.Errorf("%d of 50 askers got the refreshed copy within stale_wait, want all", fresh.Load())
	}
}

func TestHungOriginServesStaleWithinStaleWait(t *testing.T) {
	o := newTestOrigin(t)
	set := settings(o.URL)
	set.Fetchd.MinRefresh = 10 * time.Millisecond
	set.Fetchd.StaleWait = 100 * time.Millisecond
	set.Fetchd.FetchTimeout = 10 * time.Second
	s := start(t, t.TempDir(), set)
	first := ask(t, s)
	time.Sleep(20 * time.Millisecond)
	o.set(func(o *testOrigin) { o.hang = make(chan struct{}) })

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			t0 := time.Now()
			d := ask(t, s)
			if el := time.Since(t0); el > set.Fetchd.StaleWait+500*time.Millisecond {
				t.Errorf("answered after %v with the origin hung, want < stale_wait + 500ms", el)
			}
			if d.State != shared.ThemeStale || d.Version != first.Version {
				t.Errorf("state %q version %q, want the stale copy %q", d.State, d.Version, first.Version)
			}
		})
	}
	wg.Wait()
	if n := o.hits.Load(); n != 2 {
		t.Errorf("origin asked %d times, want 2 (one refresh in flight)", n)
	}
	if st := themeStats(s); st["stale"] != 20 {
		t.Errorf("stale serves = %d, want 20", st["stale"])
	}

	// The refresh has hung for longer than stale_wait: askers now get the
	// stale copy without waiting for it.
	t0 := time.Now()
	if d := ask(t, s); d.State != shared.ThemeStale {
		t.Errorf("state %q, want stale", d.State)
	}
	if el := time.Since(t0); el >= set.Fetchd.StaleWait {
		t.Errorf("an ask after the refresh hung for stale_wait waited %v, want no wait", el)
	}
}

func TestCacheSurvivesRestartWithOriginDown(t *testing.T) {
	o := newTestOrigin(t)
	dir := t.TempDir()
	set := settings(o.URL)
	set.Fetchd.MinRefresh = 0 // every ask after the first is stale
	s := start(t, dir, set)
	want := ask(t, s)
	stop(t, s)
	o.Close() // origin gone

	s2 := start(t, dir, set)
	d := ask(t, s2)
	if d.State != shared.ThemeStale || string(d.HTML) != goodPage || d.Version != want.Version {
		t.Fatalf("after restart with origin down: state %q, %d bytes, version %q; want the stale copy %q", d.State, len(d.HTML), d.Version, want.Version)
	}
	st := s2.Themes()[0]
	if st.Failures != 1 || st.LastError == "" {
		t.Errorf("failures = %d, last error %q; want the failed refresh counted", st.Failures, st.LastError)
	}
}

func TestNoCopyOriginDownBacksOff(t *testing.T) {
	o := newTestOrigin(t)
	o.set(func(o *testOrigin) { o.code = 500 })
	s := start(t, t.TempDir(), settings(o.URL))

	end := time.Now().Add(2 * time.Second)
	asks := 0
	for time.Now().Before(end) {
		t0 := time.Now()
		if d := ask(t, s); d.State != shared.ThemeUnthemed || d.HTML != nil {
			t.Fatalf("state %q, want unthemed", d.State)
		}
		if el := time.Since(t0); el > 500*time.Millisecond {
			t.Fatalf("unthemed answer took %v", el)
		}
		asks++
		time.Sleep(10 * time.Millisecond)
	}
	if n := o.hits.Load(); n < 1 || n > 3 {
		t.Errorf("origin asked %d times in 2s (%d asks), want 1..3 (backoff)", n, asks)
	}
	st := themeStats(s)
	if st["failures"] != uint64(o.hits.Load()) || st["unthemed"] != uint64(asks) {
		t.Errorf("counters %v, want failures = origin hits, unthemed = %d", st, asks)
	}
}

func TestUnusablePagesKeepLastGood(t *testing.T) {
	o := newTestOrigin(t)
	set := settings(o.URL)
	set.Fetchd.MinRefresh = 0
	set.Fetchd.StaleWait = 2 * time.Second // each ask waits for its refresh
	s := start(t, t.TempDir(), set, func(o *Options) { o.BackoffBase = time.Millisecond })
	good := ask(t, s)

	bad := []struct {
		name  string
		apply func(o *testOrigin)
	}{
		{"500", func(o *testOrigin) { o.code = 500; o.page = "<html><body>oops</body></html>" }},
		{"no selector", func(o *testOrigin) { o.code = 200; o.page = "<html><body>maintenance</body></html>" }},
		{"not html", func(o *testOrigin) { o.ctype = "text/plain"; o.page = goodPage }},
	}
	for _, b := range bad {
		o.set(b.apply)
		time.Sleep(5 * time.Millisecond) // past the backoff
		d := ask(t, s)
		if d.Version != good.Version || string(d.HTML) != goodPage {
			t.Errorf("%s: served version %q, want the last good %q", b.name, d.Version, good.Version)
		}
	}
	st := themeStats(s)
	if st["failures"] != 1 || st["rejected"] != 2 {
		t.Errorf("counters %v, want 1 failure and 2 rejected", st)
	}
	if le := s.Themes()[0].LastError; !strings.Contains(le, "not text/html") {
		t.Errorf("last error %q", le)
	}

	// A usable page replaces it again.
	o.set(func(o *testOrigin) { o.ctype = "text/html"; o.page = strings.Replace(goodPage, "Theme", "New", 1) })
	time.Sleep(5 * time.Millisecond)
	if d := ask(t, s); d.Version == good.Version || !strings.Contains(string(d.HTML), "New") {
		t.Errorf("usable page not taken: version %q", d.Version)
	}
}

func TestRevalidate304(t *testing.T) {
	o := newTestOrigin(t)
	o.set(func(o *testOrigin) { o.etag = `"v1"` })
	set := settings(o.URL)
	set.Fetchd.MinRefresh = 100 * time.Millisecond
	set.Fetchd.StaleWait = 2 * time.Second
	s := start(t, t.TempDir(), set)
	first := ask(t, s)
	time.Sleep(150 * time.Millisecond)

	d, err := s.Theme(context.Background(), "main", first.Version)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != shared.ThemeFresh || !d.Fetched.After(first.Fetched) || d.Version != first.Version {
		t.Errorf("after 304: state %q fetched %v (was %v) version %q; want fresh, newer, same version", d.State, d.Fetched, first.Fetched, d.Version)
	}
	if d.HTML != nil {
		t.Errorf("caller holding the current version got %d bytes of HTML, want none", len(d.HTML))
	}
	if st := themeStats(s); st["not_modified"] != 1 || st["fetches"] != 2 {
		t.Errorf("counters %v, want 2 fetches, 1 not_modified", st)
	}
}

func TestMaxStaleExpires(t *testing.T) {
	o := newTestOrigin(t)
	set := settings(o.URL)
	set.Fetchd.MinRefresh = 0
	set.Fetchd.StaleWait = 0
	set.Fetchd.MaxStale = 300 * time.Millisecond
	s := start(t, t.TempDir(), set)
	ask(t, s)
	o.set(func(o *testOrigin) { o.code = 503 })
	if d := ask(t, s); d.State != shared.ThemeStale {
		t.Fatalf("state %q, want stale", d.State)
	}
	time.Sleep(400 * time.Millisecond)
	if d := ask(t, s); d.State != shared.ThemeUnthemed || d.HTML != nil {
		t.Fatalf("state %q with %d bytes past max_stale, want unthemed", d.State, len(d.HTML))
	}
	if st := s.Themes()[0].State; st != stateExpired {
		t.Errorf("status state %q, want expired", st)
	}
}

func TestFileURL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "theme.html")
	if err := os.WriteFile(path, []byte(goodPage), 0o600); err != nil {
		t.Fatal(err)
	}
	set := settings("file://" + path)
	set.Fetchd.MinRefresh = 0
	set.Fetchd.StaleWait = 2 * time.Second
	s := start(t, t.TempDir(), set)
	d := ask(t, s)
	if d.State != shared.ThemeFresh || string(d.HTML) != goodPage {
		t.Fatalf("state %q, %d bytes", d.State, len(d.HTML))
	}
	ask(t, s) // unchanged file: revalidates like a 304
	if st := themeStats(s); st["not_modified"] != 1 {
		t.Errorf("counters %v, want 1 not_modified", st)
	}
}

func TestUnknownTheme(t *testing.T) {
	s := start(t, t.TempDir(), settings("http://127.0.0.1:1/"))
	if _, err := s.Theme(context.Background(), "nope", ""); err == nil || !strings.Contains(err.Error(), "unknown theme") {
		t.Errorf("err = %v, want unknown theme", err)
	}
}
