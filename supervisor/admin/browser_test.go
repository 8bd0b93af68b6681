package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/internal/browsertest"
)

// TestDashboardInBrowser loads the dashboard in headless Chromium against
// a server with a token: before the token is typed the page shows a form
// and no data; after, the lanes and the mappings, with a client-supplied
// pattern shown as text, not markup; a refused token asks again.
func TestDashboardInBrowser(t *testing.T) {
	ctx := browsertest.Start(t, 90*time.Second)

	f := newFake()
	s := New(Options{Token: testToken, Listen: "127.0.0.1:8081", Backend: f, Metrics: fakeMetrics(), Log: hclog.NewNullLogger()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// failStatus makes /api/status answer 503, as an admin in trouble would.
	var failStatus atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failStatus.Load() && r.URL.Path == "/api/status" {
			writeError(w, http.StatusServiceUnavailable, "status unavailable")
			return
		}
		s.Handler().ServeHTTP(w, r)
	})}
	go srv.Serve(ln) //nolint:errcheck // returns ErrServerClosed after Close
	t.Cleanup(func() { _ = srv.Close() })
	url := "http://" + ln.Addr().String() + "/"

	// Without the token: the form, and nothing of the status.
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#login"))); err != nil {
		t.Fatalf("loading the dashboard: %v", err)
	}
	if data := text(ctx, t, "#data"); strings.TrimSpace(data) != "" {
		t.Errorf("without a token the page shows data: %q", data)
	}
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"slowlane", "4242", "/static/*", testToken} {
		if strings.Contains(html, leak) {
			t.Errorf("without a token the page contains %q", leak)
		}
	}

	// With the token: lanes and mappings.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#token"), testToken),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#mappings")),
	); err != nil {
		t.Fatalf("after entering the token: %v", err)
	}
	lanes, mappings := text(ctx, t, "#lanes"), text(ctx, t, "#mappings")
	for _, want := range []string{"default", "slowlane", "crash loop"} {
		if !strings.Contains(lanes, want) {
			t.Errorf("lanes table lacks %q:\n%s", want, lanes)
		}
	}
	for _, want := range []string{"/static/*", "auto_map", "/report/<b>x</b>"} {
		if !strings.Contains(mappings, want) {
			t.Errorf("mappings table lacks %q:\n%s", want, mappings)
		}
	}
	if n := eval[int](ctx, t, `document.querySelectorAll('#mappings b').length`); n != 0 {
		t.Errorf("a pattern from a client became markup (%d <b> elements)", n)
	}
	if got := eval[string](ctx, t, `String(sessionStorage.getItem('lanes.admin.token'))`); got != testToken {
		t.Errorf("token kept in sessionStorage = %q", got)
	}

	checkLive(ctx, t, f, &failStatus)
	browsertest.Screenshot(ctx, t, "dashboard")
	checkActions(ctx, t, f)

	// A refused token is forgotten and asked for again on the next refresh.
	eval[int](ctx, t, `sessionStorage.setItem('lanes.admin.token', 'wrong'); 0`)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#login"))); err != nil {
		t.Fatalf("after the token was refused: %v", err)
	}
	if data := text(ctx, t, "#data"); strings.TrimSpace(data) != "" {
		t.Errorf("after a 401 the page still shows data: %q", data)
	}
	if got := eval[string](ctx, t, `String(sessionStorage.getItem('lanes.admin.token'))`); got != "null" {
		t.Errorf("after a 401 the token is still kept: %q", got)
	}
}

// checkLive checks what the dashboard says about now: the requests in
// flight with their time left, the events, the rates and charts, the
// themes, and that fetchd's sections go when fetchd is off and a failed
// refresh shows a banner over the last data.
func checkLive(ctx context.Context, t *testing.T, f *fakeBackend, failStatus *atomic.Bool) {
	t.Helper()
	// In flight: the hung request, longest first, with its time left in
	// red (less than a tenth of its timeout left).
	inflight := text(ctx, t, "#inflight")
	for _, want := range []string{"/demo/hang", "102", "28s", "1.8s of 30s", "/demo/sleep", "29s of 30s"} {
		if !strings.Contains(inflight, want) {
			t.Errorf("in-flight table lacks %q:\n%s", want, inflight)
		}
	}
	if got := eval[string](ctx, t, `document.querySelector('#inflight tr:nth-child(2) td:last-child').className`); !strings.Contains(got, "bad") {
		t.Errorf("time left of a request with 6%% of its timeout left has class %q, want bad", got)
	}
	if got := eval[string](ctx, t, `document.querySelector('#inflight tr:nth-child(3) td:last-child').className`); strings.Contains(got, "bad") || strings.Contains(got, "warn") {
		t.Errorf("time left of a request with 95%% of its timeout left has class %q, want plain", got)
	}

	// Events: the kill, in red, with its request and detail.
	events := text(ctx, t, "#events")
	for _, want := range []string{"kill", "slow", "42", "GET /demo/hang", "request_timeout 30s passed", "learned", "GET /r"} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %q:\n%s", want, events)
		}
	}
	if n := eval[int](ctx, t, `[...document.querySelectorAll('#events td.bad')].filter(td => td.textContent === 'kill').length`); n != 1 {
		t.Errorf("the kill event is not shown in red (%d red kill cells)", n)
	}

	// Lanes: queue limits, crash loop with its back-off, last exit and drain.
	lanes := text(ctx, t, "#lanes")
	for _, want := range []string{"3/100", "5s", "1m", "crash loop, 5 crashes, retry in 4.0s", "exit status 2", "done: 2 replaced"} {
		if !strings.Contains(lanes, want) {
			t.Errorf("lanes table lacks %q:\n%s", want, lanes)
		}
	}
	// Rows by state: the crash loop red; lane default, whose 3 requests
	// wait at every refresh, amber; its 7 timeouts, which never rise, are
	// no alarm.
	row := func(lane string) string {
		return eval[string](ctx, t, `(() => { for (const tr of document.querySelectorAll('#lanes tr'))
			if (tr.children[0].textContent === '`+lane+`') return tr.className + '|' + tr.children[1].textContent; return ''; })()`)
	}
	browsertest.WaitFor(ctx, t, "lane default queueing at two refreshes in a row", `[...document.querySelectorAll('#lanes tr.row-warn')].length === 1`, 15*time.Second, "#lanes")
	if got := row("default"); got != "row-warn|queueing" {
		t.Errorf("lane default's row class|state = %q, want row-warn|queueing", got)
	}
	if got := row("slowlane"); !strings.HasPrefix(got, "row-bad|crash loop") {
		t.Errorf("lane slowlane's row class|state = %q, want row-bad|crash loop...", got)
	}
	timeoutsCell := `(() => { const hs = [...document.querySelectorAll('#lanes th')].map(h => h.textContent);
		const td = document.querySelector('#lanes tr:nth-child(2)').children[hs.indexOf('timeouts')]; return td.textContent + '|' + td.className; })()`
	if got := eval[string](ctx, t, timeoutsCell); got != "7|" {
		t.Errorf("lane default's timeouts cell text|class = %q, want 7 with no class (it never rose)", got)
	}

	// Workers: an exec worker's status line, as text.
	if w := text(ctx, t, "#workers"); !strings.Contains(w, "warming <i>cache</i>") {
		t.Errorf("workers table lacks the status line:\n%s", w)
	}

	// Rates need two polls; the fake /metrics adds 10 queued requests
	// waiting 0.25 s in all per scrape: a 25 ms mean wait.
	waitCell := `(() => { const hs = [...document.querySelectorAll('#lanes th')].map(h => h.textContent);
		const row = document.querySelector('#lanes tr:nth-child(2)'); return row ? row.children[hs.indexOf('wait ms')].textContent + '|' + row.children[hs.indexOf('req/s')].textContent : ''; })()`
	deadline := time.Now().Add(15 * time.Second)
	for got := ""; got != "25|0.0"; got = eval[string](ctx, t, waitCell) {
		if time.Now().After(deadline) {
			t.Errorf("lane default's wait ms|req/s = %q, want 25|0.0", got)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Charts: four per lane, each drawn on a canvas, holding the 15
	// minutes of samples the page loaded when it opened.
	if n := eval[int](ctx, t, `document.querySelectorAll('#charts .chart canvas').length`); n != 8 {
		t.Errorf("%d chart canvases, want 4 for each of the 2 lanes; charts: %s", n, text(ctx, t, "#sec-charts"))
	}
	if n := eval[int](ctx, t, `+document.getElementById('charts').dataset.points`); n < 180 {
		t.Errorf("the charts hold %d samples of lane default, want the ring's 180 and more", n)
	}
	if age := eval[float64](ctx, t, `Date.now() / 1000 - document.getElementById('charts').dataset.since`); age < 14*60 || age > 16*60 {
		t.Errorf("the charts begin %.0f s ago, want 15 minutes", age)
	}
	if key := text(ctx, t, "#charts-key"); !strings.Contains(key, "kept by lanesd") || strings.Contains(key, "this tab") {
		t.Errorf("charts key = %q", key)
	}

	// Themes: a stale copy at rest is neutral, one whose origin fails is amber.
	state := func(theme string) string {
		return eval[string](ctx, t, `(() => { for (const tr of document.querySelectorAll('#themes tr'))
			if (tr.children[0].textContent === '`+theme+`') return tr.children[2].className + '|' + tr.children[2].textContent; return ''; })()`)
	}
	if got := state("resting"); got != "l|stale" {
		t.Errorf("theme resting between refreshes: class|text %q, want l|stale (neutral)", got)
	}
	if got := state("failing"); !strings.Contains(got, "warn") {
		t.Errorf("theme whose origin fails: class|text %q, want warn", got)
	}

	// A failed refresh: a banner, and the last data stays.
	failStatus.Store(true)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#msg"))); err != nil {
		t.Fatalf("no banner after a failed refresh: %v", err)
	}
	if msg := text(ctx, t, "#msg"); !strings.Contains(msg, "status unavailable") {
		t.Errorf("banner = %q", msg)
	}
	if lanes := text(ctx, t, "#lanes"); !strings.Contains(lanes, "default") {
		t.Errorf("after a failed refresh the lanes are gone: %q", lanes)
	}
	failStatus.Store(false)
	if err := chromedp.Do(ctx, chromedp.WaitNotVisible(chromedp.CSS("#msg"))); err != nil {
		t.Fatalf("the banner stays after a good refresh: %v", err)
	}

	// fetchd disabled (no theme configured): no fetchd or themes section.
	f.setFetchdOff(true)
	if err := chromedp.Do(ctx, chromedp.WaitNotPresent(chromedp.CSS("#fetchd")), chromedp.WaitNotPresent(chromedp.CSS("#themes"))); err != nil {
		t.Fatalf("fetchd section still shown when fetchd is disabled: %v", err)
	}
	if rest := text(ctx, t, "#data"); strings.Contains(rest, "fetchd") || strings.Contains(rest, "Themes") {
		t.Errorf("with fetchd disabled the page still mentions it:\n%s", rest)
	}
	f.setFetchdOff(false)
}

// checkActions drains, resizes and unmaps from the page: each call
// reaches the backend and its answer shows; a refused one shows the API's
// error text, and a call the admin refuses before the backend never gets
// there.
func checkActions(ctx context.Context, t *testing.T, f *fakeBackend) {
	t.Helper()
	waitMsg := func(what, want string) {
		t.Helper()
		browsertest.WaitFor(ctx, t, what, `(() => { const m = document.getElementById('action-msg');
			return !m.hidden && m.textContent.includes(`+jsString(want)+`); })()`, 15*time.Second, "#action-msg")
	}
	click := func(sel string) {
		t.Helper()
		browsertest.Click(ctx, t, sel, 30*time.Second)
	}
	laneButton := func(lane, label string) string {
		return `#lanes button[data-act*='"lane":"` + lane + `"'][data-act*='"kind":"` + label + `"']`
	}
	called := func(call string) bool {
		for _, c := range f.Calls() {
			if c == call {
				return true
			}
		}
		return false
	}

	// Resize lane default: the form starts at its sizes; 9 > 2 is refused
	// by the admin with its own words and reaches no backend.
	click(laneButton("default", "resize"))
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#action-min"))); err != nil {
		t.Fatalf("no resize form: %v", err)
	}
	if got := eval[string](ctx, t, `document.getElementById('action-min').value + '/' + document.getElementById('action-max').value`); got != "2/8" {
		t.Errorf("resize form starts at %q, want the lane's 2/8", got)
	}
	setSizes := func(min, max string) {
		t.Helper()
		eval[int](ctx, t, `document.getElementById('action-min').value = `+jsString(min)+`;
			document.getElementById('action-max').value = `+jsString(max)+`; 0`)
	}
	setSizes("9", "2")
	click("#action-go")
	waitMsg("the refused resize's error", "Refused (400): resize: min_workers 9 is above max_workers 2")
	browsertest.Screenshot(ctx, t, "refused-resize")
	if called("resize default 9 2") {
		t.Error("a resize the admin refused reached the backend")
	}
	setSizes("3", "6")
	click("#action-go")
	waitMsg("the resize's answer", "Lane default resized: min_workers 3, max_workers 6")
	if !called("resize default 3 6") {
		t.Errorf("the resize did not reach the backend: %q", f.Calls())
	}

	// Drain: lane slowlane is unknown to the backend (404, its words);
	// lane default drains.
	click(laneButton("slowlane", "drain"))
	click("#action-go")
	waitMsg("the refused drain's error", `Refused (404): no lane "slowlane"`)
	click("#action-cancel")
	click(laneButton("default", "drain"))
	click("#action-go")
	waitMsg("the drain's answer", "Drain of lane default started: 2 worker(s) to replace")
	if !called("drain default") {
		t.Errorf("the drain did not reach the backend: %q", f.Calls())
	}

	// Unmap: only runtime and learned mappings have a button; the learned
	// one goes, and the next refresh shows it gone.
	if n := eval[int](ctx, t, `document.querySelectorAll('#mappings button[data-act]').length`); n != 1 {
		t.Errorf("%d remove buttons in the mappings, want 1 (the config mapping has none)", n)
	}
	click("#mappings button[data-act]")
	click("#action-go")
	waitMsg("the unmap's answer", "Removed POST /report/<b>x</b>")
	if !called("unmap POST /report/<b>x</b>") {
		t.Errorf("the unmap did not reach the backend: %q", f.Calls())
	}
	browsertest.WaitFor(ctx, t, "the removed mapping gone from the table",
		`!document.getElementById('mappings').textContent.includes('/report/')`, 15*time.Second, "#mappings")
}

// jsString quotes s as a JavaScript string.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// fakeMetrics serves a lanes_request_queue_seconds histogram for lane
// "default" that grows by 10 requests and 0.25 s of waiting per scrape.
func fakeMetrics() http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := n.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE lanes_request_queue_seconds histogram\n"+
			"lanes_request_queue_seconds_bucket{lane=\"default\",le=\"0.01\"} %d\n"+
			"lanes_request_queue_seconds_bucket{lane=\"default\",le=\"0.1\"} %d\n"+
			"lanes_request_queue_seconds_bucket{lane=\"default\",le=\"+Inf\"} %d\n"+
			"lanes_request_queue_seconds_sum{lane=\"default\"} %g\n"+
			"lanes_request_queue_seconds_count{lane=\"default\"} %d\n", 5*k, 10*k, 10*k, 0.25*float64(k), 10*k)
	})
}

func text(ctx context.Context, t *testing.T, sel string) string {
	t.Helper()
	return browsertest.Text(ctx, t, sel)
}

func eval[T any](ctx context.Context, t *testing.T, js string) T {
	t.Helper()
	return browsertest.Eval[T](ctx, t, js)
}
