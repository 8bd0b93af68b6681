package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/fetchd"
	"github.com/lanes-dev/lanes/shared"
)

// Scenario 10, theming: a 50 KB page from the origin, through lanes in
// upstream mode, wrapped in a 20 KB theme that fetchd fetches from a theme
// origin run inside the bench (so the bench counts its fetches and can make
// it hang).
//
//   - throughput, themed (/page) vs. unthemed (/plain: the same page with
//     X-Lanes-Theme: off, so the same workers pass it through), alternating;
//   - the filter time (Server-Timing filter) under that load and at a
//     light rate;
//   - theme origin fetches per minute under that load (min_refresh 5 s);
//   - request latency with the theme origin hung (stale copy served after
//     stale_wait);
//   - fetchd's RSS with 1,000 cached pages of 50 KB.

const (
	themeMinRefresh = 5 * time.Second
	themeStaleWait  = 100 * time.Millisecond
	themeFetchTO    = 2 * time.Second
	themeLightRate  = 50.0
	themeMarker     = "bench-theme-marker"
	// themeFilterTarget is issue 16's filter p50 target on the 50 KB page.
	themeFilterTarget = 500 * time.Microsecond
)

// themeOrigin is the theme server: the 20 KB theme at /theme.html (with an
// ETag, answering 304 to a matching If-None-Match) and 50 KB theme pages at
// /t/N. It counts what it serves and can hang.
type themeOrigin struct {
	srv      *http.Server
	addr     string
	fetches  atomic.Int64 // requests for /theme.html
	notMod   atomic.Int64 // of which answered 304
	pages    atomic.Int64 // requests for /t/N
	hung     atomic.Bool
	release  chan struct{}
	lastSeen atomic.Int64 // unix nanos of the last /theme.html request
}

func startThemeOrigin() (*themeOrigin, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := &themeOrigin{addr: ln.Addr().String(), release: make(chan struct{})}
	theme := themePage(20<<10, "bench theme", 0)
	const etag = `"bench-theme-v1"`
	mux := http.NewServeMux()
	mux.HandleFunc("/theme.html", func(w http.ResponseWriter, r *http.Request) {
		o.fetches.Add(1)
		o.lastSeen.Store(time.Now().UnixNano())
		if o.hung.Load() {
			select {
			case <-o.release:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			o.notMod.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(theme)
	})
	mux.HandleFunc("/t/{n}", func(w http.ResponseWriter, r *http.Request) {
		o.pages.Add(1)
		n, _ := strconv.Atoi(r.PathValue("n"))
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(themePage(50<<10, "page "+strconv.Itoa(n), n))
	})
	o.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go o.srv.Serve(ln)
	return o, nil
}

func (o *themeOrigin) close() {
	o.unhang()
	o.srv.Close()
}

func (o *themeOrigin) unhang() {
	if o.hung.CompareAndSwap(true, false) {
		close(o.release)
	}
}

// filler returns about n bytes of paragraphs.
func filler(n int, seed int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "<p class=\"p%d\">Paragraph %d of %d: lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.</p>\n", i%7, i, seed)
	}
	return b.String()
}

// themePage is a usable theme of about size bytes: a head, navigation, a
// #content with a .placeholder, a footer.
func themePage(size int, title string, seed int) []byte {
	head := fmt.Sprintf("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>%s</title><link rel=\"stylesheet\" href=\"/theme.css\"><style>body{font-family:sans-serif}</style></head>\n<body><header><h1>%s</h1><nav><a href=\"/\">home</a> <a href=\"/about\">about</a></nav></header>\n<main><div id=\"content\"><p class=\"placeholder\">content goes here</p></div></main>\n<aside>",
		title, themeMarker)
	tail := "</aside><footer>bench theme footer</footer></body></html>\n"
	return []byte(head + filler(size-len(head)-len(tail), seed) + tail)
}

// contentPage is the origin's 50 KB content page.
func contentPage(size int) []byte {
	head := "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>bench content page</title><link rel=\"stylesheet\" href=\"/page.css\"></head>\n<body><div id=\"content\"><h2>content</h2>\n"
	tail := "</div></body></html>\n"
	return []byte(head + filler(size-len(head)-len(tail), 1) + tail)
}

// themeConfig is lanesd in upstream mode with the theme main from the
// theme origin, and extra themes (the RSS figure's).
func (b *bench) themeConfig(origin, themeURL, cacheDir string, appTheme string, extra string) string {
	return configHeader + "debug_headers = true\n" +
		fmt.Sprintf("\napp {\n  upstream = %q\n  theme    = %q\n}\n", "http://"+origin, appTheme) +
		fmt.Sprintf(`
theme "main" {
  url = %q
  rule "replace" {
    theme   = "#content"
    content = "#content"
  }
  rule "title" {}
  rule "append" {
    theme   = "head"
    content = "head link, head style"
  }
  rule "drop" {
    theme = ".placeholder"
  }
}

fetchd {
  cache_dir     = %q
  fetch_timeout = %q
  min_refresh   = %q
  stale_wait    = %q
}
`, themeURL, cacheDir, themeFetchTO.String(), themeMinRefresh.String(), themeStaleWait.String()) +
		laneBlock("default", b.opt.proxyWorkers, b.opt.proxyConc, "  max_queue       = 1000\n") + extra
}

// stLoad is a load run that reads lanes' headers: the Server-Timing filter
// time and X-Theme.
type stLoad struct {
	lat      dist // closed loop: from send; open loop: from due
	filter   dist
	xtheme   map[string]int
	requests int
	failed   int
	firstErr string
	rps      float64
}

func (s *stLoad) record(resp *fasthttp.Response, err error, d time.Duration) {
	s.requests++
	if err != nil || resp.StatusCode() != fasthttp.StatusOK {
		s.failed++
		noteFailure(&s.firstErr, resp.StatusCode(), err)
		return
	}
	s.lat.add(d, false)
	if f, ok := serverTiming(resp.Header.Peek("Server-Timing"), "filter"); ok {
		s.filter.add(f, false)
	}
	if s.xtheme == nil {
		s.xtheme = map[string]int{}
	}
	x := string(resp.Header.Peek("X-Theme"))
	if x == "" {
		x = "none"
	}
	s.xtheme[x]++
}

// stClosed keeps conns connections busy with GET path for d.
func stClosed(ctx context.Context, addr, path string, conns int, d time.Duration) *stLoad {
	client := &fasthttp.HostClient{Addr: addr, MaxConns: conns, MaxIdemponentCallAttempts: 1, NoDefaultUserAgentHeader: true}
	defer client.CloseIdleConnections()
	var (
		mu  sync.Mutex
		out = &stLoad{}
		wg  sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for range conns {
		wg.Go(func() {
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + path)
			for ctx.Err() == nil && time.Now().Before(end) {
				t := time.Now()
				err := client.DoTimeout(req, resp, 10*time.Second)
				el := time.Since(t)
				mu.Lock()
				out.record(resp, err, el)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	out.rps = float64(out.lat.n()) / time.Since(start).Seconds()
	return out
}

// stOpen sends GET path at rate for d, latency counted from when each
// request was due.
func stOpen(ctx context.Context, addr, path string, rate float64, d time.Duration) *stLoad {
	client := &fasthttp.HostClient{Addr: addr, MaxConns: 4096, MaxIdemponentCallAttempts: 1, NoDefaultUserAgentHeader: true}
	defer client.CloseIdleConnections()
	var (
		mu  sync.Mutex
		out = &stLoad{}
		wg  sync.WaitGroup
	)
	t0 := time.Now().Add(10 * time.Millisecond)
	for i := 0; ; i++ {
		due := t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if due.Sub(t0) >= d || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Until(due))
		wg.Go(func() {
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + path)
			err := client.DoTimeout(req, resp, 10*time.Second)
			el := time.Since(due)
			mu.Lock()
			out.record(resp, err, el)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// themeResult is what scenario 10 found.
type themeResult struct {
	themed, plain []*stLoad // one per round
	tpTime        time.Duration
	tpFetches     int64 // theme origin requests during the throughput rounds
	tpNotMod      int64
	light         *stLoad // light rate, origin fine
	hung          *stLoad // light rate, origin hung
	hungFetches   int64
	rss           fetchdRSS
	// heap objects the workers allocate per request, themed and
	// unthemed (<0: not measured, allocWhy says why)
	allocThemed, allocPlain float64
	allocWhy                string
	notes                   []string
}

func (b *bench) theming(ctx context.Context) (func(io.Writer), error) {
	to, err := startThemeOrigin()
	if err != nil {
		return nil, err
	}
	defer to.close()
	origin, err := b.startOrigin()
	if err != nil {
		return nil, err
	}
	defer origin.Stop()
	cache := filepath.Join(b.tmp, "fetchd-theming")
	l, err := b.startLanesd("lanesd (themed)", b.themeConfig(origin.addr, "http://"+to.addr+"/theme.html", cache, "main", ""))
	if err != nil {
		return nil, err
	}
	defer l.Stop()
	if err := checkThemed(l.addr); err != nil {
		return nil, err
	}
	r := &themeResult{}
	conns := b.opt.conns

	// Throughput, alternating, counting the theme origin's fetches.
	f0, n0 := to.fetches.Load(), to.notMod.Load()
	start := time.Now()
	for round := 1; round <= b.opt.themeRounds && ctx.Err() == nil; round++ {
		for _, path := range []string{"/page", "/plain"} {
			b.progress("theming round %d/%d, %s: 1s warm-up + %s, %d connections", round, b.opt.themeRounds, path, b.opt.themeTime, conns)
			stClosed(ctx, l.addr, path, conns, time.Second)
			x := stClosed(ctx, l.addr, path, conns, b.opt.themeTime)
			if path == "/page" {
				r.themed = append(r.themed, x)
			} else {
				r.plain = append(r.plain, x)
			}
		}
	}
	r.tpTime = time.Since(start)
	r.tpFetches, r.tpNotMod = to.fetches.Load()-f0, to.notMod.Load()-n0

	b.progress("theming: the workers' heap allocations, %d themed then %d unthemed requests", themeAllocReq, themeAllocReq)
	r.allocThemed, r.allocPlain, r.allocWhy = b.themeAllocs(ctx, l)

	// Light load, origin fine, then hung.
	b.progress("theming: %.0f req/s for %s, theme origin fine", themeLightRate, b.opt.themeHung)
	r.light = stOpen(ctx, l.addr, "/page", themeLightRate, b.opt.themeHung)
	to.hung.Store(true)
	// Let the cached copy go stale: min_refresh after the last fetch.
	last := time.Unix(0, to.lastSeen.Load())
	time.Sleep(time.Until(last.Add(themeMinRefresh + 200*time.Millisecond)))
	b.progress("theming: %.0f req/s for %s, theme origin hung", themeLightRate, b.opt.themeHung)
	f0 = to.fetches.Load()
	r.hung = stOpen(ctx, l.addr, "/page", themeLightRate, b.opt.themeHung)
	r.hungFetches = to.fetches.Load() - f0
	to.unhang()
	l.log.mark()
	l.Stop()
	r.notes = append(r.notes, lanesdNotes(l)...)

	if ctx.Err() == nil {
		r.rss = b.fetchdRSS(ctx, origin.addr, to)
	}
	return r.print(b), ctx.Err()
}

// themeAllocReq is how many requests the allocation figures average over.
const themeAllocReq = 2000

// themeAllocs returns the heap objects lane "default"'s workers allocate
// per themed (/page) and per unthemed (/plain) request. Workers report
// their count in their health checks, every 5 s: each reading waits for a
// fresh one.
func (b *bench) themeAllocs(ctx context.Context, l *server) (themed, plain float64, why string) {
	read := func() (uint64, []int, error) {
		time.Sleep(5500 * time.Millisecond)
		st, err := l.status()
		if err != nil {
			return 0, nil, err
		}
		var sum uint64
		var pids []int
		if ln := st.Lane("default"); ln != nil {
			for _, w := range ln.Workers {
				sum += w.Allocs
				pids = append(pids, w.PID)
			}
		}
		return sum, pids, nil
	}
	var a [3]uint64
	var pids [3][]int
	var n [2]int
	var err error
	for i, path := range []string{"", "/page", "/plain"} {
		if path != "" {
			sent, errs := closedLoopN(ctx, l.addr, path, b.opt.conns, themeAllocReq)
			if errs > 0 || sent == 0 {
				return -1, -1, fmt.Sprintf("n/a (%d of %d requests to %s failed)", errs, sent, path)
			}
			n[i-1] = sent
		}
		if a[i], pids[i], err = read(); err != nil {
			return -1, -1, "n/a (" + err.Error() + ")"
		}
	}
	if !slices.Equal(pids[0], pids[1]) || !slices.Equal(pids[1], pids[2]) {
		return -1, -1, "n/a (the workers changed during the measurement)"
	}
	return float64(a[1]-a[0]) / float64(n[0]), float64(a[2]-a[1]) / float64(n[1]), ""
}

// checkThemed checks that /page comes back themed and /plain does not.
func checkThemed(addr string) error {
	for _, c := range []struct {
		path   string
		themed bool
	}{{"/page", true}, {"/plain", false}} {
		var body []byte
		deadline := time.Now().Add(15 * time.Second)
		for {
			status, b, err := fasthttp.GetTimeout(nil, "http://"+addr+c.path, 10*time.Second)
			if err == nil && status == 200 && bytes.Contains(b, []byte(themeMarker)) == c.themed {
				break
			}
			body = b
			if time.Now().After(deadline) {
				return fmt.Errorf("GET %s: themed should be %v (status %d, err %v): %.200s", c.path, c.themed, status, err, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// fetchdRSS is fetchd's memory with many cached pages.
type fetchdRSS struct {
	pages      int
	how        string // what was measured
	entries    int
	cacheBytes int64
	filled     memInfo  // after every page was fetched and served
	reopened   memInfo  // after a restart of fetchd and every page served again from disk
	filledBy   rssParts // what the resident sizes are made of
	reopenedBy rssParts
	originHits int64 // theme origin requests while serving from disk
	err        error
	notes      []string
}

// fetchdRSS measures fetchd's RSS with opt.themePages pages of 50 KB:
// first as an operator would have them (that many theme blocks, each
// fetched through fetchd's own service), and if fetchd cannot start with
// that many themes, with a cache filled beforehand through the fetchd
// package (as fetchd's RSS test does) and one theme configured.
func (b *bench) fetchdRSS(ctx context.Context, origin string, to *themeOrigin) fetchdRSS {
	n := b.opt.themePages
	r := fetchdRSS{pages: n}
	b.progress("theming: fetchd with %d themes of 50 KB", n)
	var extra strings.Builder
	for i := range n {
		fmt.Fprintf(&extra, "\ntheme \"p%d\" {\n  url = \"http://%s/t/%d\"\n  rule \"replace\" {\n    theme   = \"#content\"\n    content = \"#content\"\n  }\n}\n", i, to.addr, i)
	}
	cache := filepath.Join(b.tmp, "fetchd-rss")
	// min_refresh 1h: the restarted fetchd serves every page from disk even
	// when filling took longer than the theming scenario's 5 s.
	cfg := b.themeConfig(origin, "http://"+to.addr+"/theme.html", cache, "main", extra.String())
	from := fmt.Sprintf("min_refresh   = %q", themeMinRefresh.String())
	if !strings.Contains(cfg, from) {
		r.err = fmt.Errorf("fetchd rss: no %s in the theming config", from)
		return r
	}
	l, err := b.startLanesd("lanesd (fetchd rss)", strings.Replace(cfg, from, `min_refresh   = "1h"`, 1))
	if err != nil {
		r.err = err
		return r
	}
	defer l.Stop()
	pid, err := waitFetchd(ctx, l, 0, 10*time.Second)
	if err == nil {
		r.how = fmt.Sprintf("%d theme blocks, each fetched through fetchd's ThemeService, then fetchd SIGKILLed, respawned, and every page served again from its badger cache", n)
		err = askAll(ctx, pid, n)
		if err == nil {
			r.filled, err = readMem(pid)
			r.filledBy = readRSSParts(pid, cache)
		}
		if err == nil {
			h0 := to.pages.Load()
			if err = syscallKill(pid); err == nil {
				var npid int
				if npid, err = waitFetchd(ctx, l, pid, 15*time.Second); err == nil {
					if err = askAll(ctx, npid, n); err == nil {
						r.reopened, err = readMem(npid)
						r.reopenedBy = readRSSParts(npid, cache)
					}
				}
			}
			r.originHits = to.pages.Load() - h0
		}
		if st, serr := l.status(); serr == nil {
			r.entries, r.cacheBytes = st.Fetchd.CacheEntries, st.Fetchd.CacheBytes
		}
		r.err = err
		l.log.mark()
		return r
	}
	// Fallback.
	st, _ := l.status()
	why := err.Error()
	if st != nil && st.Fetchd.LastError != "" {
		why = st.Fetchd.LastError
	}
	r.notes = append(r.notes, fmt.Sprintf("fetchd does not start with %d theme blocks: %s", n, why))
	l.log.mark()
	l.Stop()

	cache = filepath.Join(b.tmp, "fetchd-rss-filled")
	c, err := fetchd.OpenCache(cache, fetchd.CacheOptions{})
	if err != nil {
		r.err = err
		return r
	}
	for i := range n {
		p := themePage(50<<10, "page "+strconv.Itoa(i), i)
		e := fetchd.Entry{URL: fmt.Sprintf("http://%s/t/%d", to.addr, i), Version: "v" + strconv.Itoa(i), Fetched: time.Now(), Size: len(p)}
		if err := c.Put("p"+strconv.Itoa(i), e, p); err != nil {
			c.Close()
			r.err = err
			return r
		}
	}
	if err := c.Close(); err != nil {
		r.err = err
		return r
	}
	extra.Reset()
	fmt.Fprintf(&extra, "\ntheme \"p0\" {\n  url = \"http://%s/t/0\"\n  rule \"replace\" {\n    theme   = \"#content\"\n    content = \"#content\"\n  }\n}\n", to.addr)
	l, err = b.startLanesd("lanesd (fetchd rss, filled)", b.themeConfig(origin, "http://"+to.addr+"/theme.html", cache, "p0", extra.String()))
	if err != nil {
		r.err = err
		return r
	}
	defer l.Stop()
	if pid, err = waitFetchd(ctx, l, 0, 10*time.Second); err != nil {
		r.err = err
		return r
	}
	r.how = fmt.Sprintf("FALLBACK: a cache of %d pages written beforehand with the fetchd package (as fetchd's RSS test does); fetchd opens it with one theme configured, serving page 0 under %d requests through lanes", n, 200)
	h0 := to.pages.Load()
	for range 200 {
		fasthttp.GetTimeout(nil, "http://"+l.addr+"/page", 10*time.Second)
	}
	r.filled, r.err = readMem(pid)
	r.originHits = to.pages.Load() - h0
	if st, serr := l.status(); serr == nil {
		r.entries, r.cacheBytes = st.Fetchd.CacheEntries, st.Fetchd.CacheBytes
	}
	l.log.mark()
	return r
}

// rssParts is what a process's resident size is made of, from
// /proc/PID/smaps: anonymous memory (the Go heap, stacks), its executable
// mapped from disk (code and read-only data, shared in the page cache with
// every process of that binary), the cache directory's files (badger's
// maps), and other files.
type rssParts struct {
	anon, binary, cache, other int64
}

func readRSSParts(pid int, cacheDir string) rssParts {
	var p rssParts
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return p
	}
	bin, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if abs, err := filepath.Abs(cacheDir); err == nil {
		cacheDir = abs
	}
	if r, err := filepath.EvalSymlinks(cacheDir); err == nil {
		cacheDir = r
	}
	var into *int64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") { // a mapping's header
			path := ""
			if len(f) >= 6 {
				path = strings.Join(f[5:], " ")
			}
			switch {
			case path == "" || strings.HasPrefix(path, "["):
				into = &p.anon
			case path == bin:
				into = &p.binary
			case strings.HasPrefix(path, cacheDir+"/"):
				into = &p.cache
			default:
				into = &p.other
			}
			continue
		}
		if f[0] == "Rss:" && len(f) >= 2 && into != nil {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			*into += kb << 10
		}
	}
	return p
}

func (p rssParts) String() string {
	if p == (rssParts{}) {
		return ""
	}
	return fmt.Sprintf(" = anonymous %s + lanesd binary %s + cache files %s + other files %s",
		fmtMB(p.anon), fmtMB(p.binary), fmtMB(p.cache), fmtMB(p.other))
}

func syscallKill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

// waitFetchd waits until l's fetchd is ready with a pid other than not.
func waitFetchd(ctx context.Context, l *server, not int, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for {
		st, err := l.status()
		if err != nil {
			return 0, err
		}
		if st.Fetchd.State == "ready" && st.Fetchd.PID > 0 && st.Fetchd.PID != not {
			return st.Fetchd.PID, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("fetchd not ready after %s (state %q, last error %q)", limit, st.Fetchd.State, st.Fetchd.LastError)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// askAll asks fetchd (pid) for themes p0..p(n-1) over its ThemeService
// socket, found in its environment, 8 at a time.
func askAll(ctx context.Context, pid, n int) error {
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return err
	}
	var sock string
	for _, kv := range bytes.Split(env, []byte{0}) {
		if k, v, ok := bytes.Cut(kv, []byte("=")); ok && string(k) == shared.EnvFetchdSocket {
			sock = string(v)
		}
	}
	if sock == "" {
		return fmt.Errorf("fetchd %d: no %s in its environment", pid, shared.EnvFetchdSocket)
	}
	svc, closeSvc, err := shared.DialThemeService(sock)
	if err != nil {
		return err
	}
	defer closeSvc()
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		first atomic.Value
	)
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, cancel := context.WithTimeout(ctx, 15*time.Second)
				d, err := svc.Theme(c, "p"+strconv.Itoa(i), "")
				cancel()
				if err == nil && len(d.HTML) < 40<<10 {
					err = fmt.Errorf("theme p%d: %d bytes of HTML (state %q)", i, len(d.HTML), d.State)
				}
				if err != nil {
					first.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return e.(error)
	}
	return nil
}

func (r *themeResult) print(b *bench) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprintf(w, "10. THEMING: a 50 KB page through lanes (upstream mode, %d workers × concurrency %d), in a 20 KB theme\n\n", b.opt.proxyWorkers, b.opt.proxyConc)
		fmt.Fprintf(w, "   theme rules replace #content, title, append head, drop .placeholder; fetchd min_refresh %s,\n", themeMinRefresh)
		fmt.Fprintf(w, "   stale_wait %s, fetch_timeout %s; the theme origin (in the bench process) sends an ETag and answers 304.\n", themeStaleWait, themeFetchTO)
		fmt.Fprintf(w, "   Unthemed = the same page with X-Lanes-Theme: off from the origin, through the same workers.\n")
		fmt.Fprintf(w, "   Go closed loop, %d connections, %d rounds alternating, 1 s warm-up + %s each; median round.\n\n", b.opt.conns, b.opt.themeRounds, b.opt.themeTime)
		med := func(xs []*stLoad) *stLoad {
			if len(xs) == 0 {
				return nil
			}
			s := append([]*stLoad(nil), xs...)
			for i := range s {
				for j := i + 1; j < len(s); j++ {
					if s[j].rps < s[i].rps {
						s[i], s[j] = s[j], s[i]
					}
				}
			}
			return s[len(s)/2]
		}
		th, pl := med(r.themed), med(r.plain)
		var t table
		t.row("target", "req/s", "p50", "p99", "filter p50", "filter p99", "errors", "X-Theme")
		for _, x := range []struct {
			name string
			s    *stLoad
			all  []*stLoad
		}{{"themed /page", th, r.themed}, {"unthemed /plain", pl, r.plain},
			{fmt.Sprintf("themed, light load (%.0f req/s, open loop)", themeLightRate), r.light, nil},
			{fmt.Sprintf("themed, theme origin hung (%.0f req/s)", themeLightRate), r.hung, nil}} {
			if x.s == nil {
				continue
			}
			errs := x.s.failed
			rps := "-"
			if x.all != nil {
				errs = 0
				for _, a := range x.all {
					errs += a.failed
				}
				rps = fmt.Sprintf("%.0f", x.s.rps)
			}
			t.row(x.name, rps, x.s.lat.pctString(50), x.s.lat.pctString(99), x.s.filter.pctString(50), x.s.filter.pctString(99),
				strconv.Itoa(errs), fmtCounts(x.s.xtheme))
		}
		t.write(w, "   ")
		fmt.Fprintln(w)
		if th != nil && pl != nil {
			fmt.Fprintf(w, "   target: themed / unthemed throughput ≥ 0.5×: %s → %s\n", ratio(th.rps, pl.rps), verdict(pl.rps > 0 && th.rps >= pl.rps/2))
		}
		if r.light != nil {
			p50, _ := r.light.filter.pct(50)
			fmt.Fprintf(w, "   target: filter p50 ≤ 0.5 ms (light load; it includes asking fetchd): %s → %s\n", fmtDur(p50.d), verdict(r.light.filter.n() > 0 && p50.d <= themeFilterTarget))
		}
		if r.allocWhy != "" {
			fmt.Fprintf(w, "   heap allocations per request in the workers: %s\n", r.allocWhy)
		} else {
			fmt.Fprintf(w, "   heap allocations per request in the workers (%d each, from their health reports): themed %.0f, unthemed %.0f; theming %.0f\n",
				themeAllocReq, r.allocThemed, r.allocPlain, r.allocThemed-r.allocPlain)
		}
		if r.tpTime > 0 {
			perMin := float64(r.tpFetches) / r.tpTime.Minutes()
			allowed := time.Minute.Seconds()/themeMinRefresh.Seconds() + 1 // +1: the first fetch
			fmt.Fprintf(w, "   theme origin fetches under load: %d (%d answered 304) in %s = %.1f/min; target ≤ 1 per min_refresh (%.0f/min) → %s\n",
				r.tpFetches, r.tpNotMod, r.tpTime.Round(time.Second), perMin, time.Minute.Seconds()/themeMinRefresh.Seconds(),
				verdict(float64(r.tpFetches) <= r.tpTime.Seconds()/themeMinRefresh.Seconds()+1 && allowed > 0))
		}
		if r.hung != nil {
			p99, _ := r.hung.lat.pct(99)
			fmt.Fprintf(w, "   target: p99 with the theme origin hung ≤ stale_wait + 10 ms (%s): %s → %s; %d fetch attempts reached the hung origin\n",
				themeStaleWait+10*time.Millisecond, fmtDur(p99.d), verdict(r.hung.lat.n() > 0 && p99.d <= themeStaleWait+10*time.Millisecond), r.hungFetches)
		}
		rs := r.rss
		fmt.Fprintf(w, "\n   fetchd RSS with %d cached pages of 50 KB (VmRSS / VmHWM of the fetchd process):\n", rs.pages)
		fmt.Fprintf(w, "   measured: %s\n", rs.how)
		if rs.filled.rss > 0 {
			fmt.Fprintf(w, "     after filling:      RSS %s, peak %s%s\n", fmtMB(rs.filled.rss), fmtMB(rs.filled.hwm), rs.filledBy)
		}
		if rs.reopened.rss > 0 {
			fmt.Fprintf(w, "     reopened from disk: RSS %s, peak %s (theme origin asked %d times meanwhile)%s\n", fmtMB(rs.reopened.rss), fmtMB(rs.reopened.hwm), rs.originHits, rs.reopenedBy)
		}
		fmt.Fprintf(w, "     cache: %d entries, %s\n", rs.entries, fmtMB(rs.cacheBytes))
		worst := max(rs.filled.rss, rs.reopened.rss)
		if worst > 0 {
			fmt.Fprintf(w, "   target: fetchd RSS ≤ 40 MB: %s → %s\n", fmtMB(worst), verdict(worst <= 40<<20))
		}
		if rs.err != nil {
			fmt.Fprintf(w, "   fetchd RSS: error: %v\n", rs.err)
		}
		for _, n := range rs.notes {
			fmt.Fprintf(w, "   note: %s\n", n)
		}
		for _, x := range []*stLoad{th, pl, r.light, r.hung} {
			if x != nil && x.firstErr != "" {
				fmt.Fprintf(w, "   note: first error: %s\n", x.firstErr)
			}
		}
		for _, n := range r.notes {
			fmt.Fprintf(w, "   note: %s\n", n)
		}
		fmt.Fprintln(w)
	}
}

// fmtCounts formats a small count map as "fresh 120, stale 3".
func fmtCounts(m map[string]int) string {
	var parts []string
	for _, k := range []string{"fresh", "stale", "unthemed", "none"} {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	for k, v := range m {
		switch k {
		case "fresh", "stale", "unthemed", "none":
		default:
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
	}
	return strings.Join(parts, ", ")
}
