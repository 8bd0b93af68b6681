package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/internal/browsertest"
)

// TestDashboardUnderLoad opens the dashboard of a running lanesd (with a
// token) in headless Chromium while requests keep coming: the page shows a
// hung request live, with its time left, then its kill event once
// request_timeout ends it, and a screenshot of each is kept as a test
// artefact; a resize made from the page reaches the lane. Every wait is on
// a condition, with bounds far above what it takes.
func TestDashboardUnderLoad(t *testing.T) {
	ctx := browsertest.Start(t, 3*time.Minute) // skips first when there is no Chromium
	const token = "dash-token-0123456789"
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, stop := startAdmin(t, fmt.Sprintf("admin {\n  listen = \"127.0.0.1:0\"\n  token_file = %q\n}\nlog {\n  level = \"warn\"\n  access_log = false\n}", tokFile), `
lane "default" {
  min_workers = 2
  max_workers = 4
  command = [CMD]
}
lane "slow" {
  min_workers = 1
  max_workers = 2
  request_timeout = "10s"
  map = ["GET /hello/sleep"]
  command = [CMD]
}`, hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}))
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	front := "http://" + s.FrontAddr().String()

	// The load: two clients, each a request every 10 ms, on lane default.
	done := make(chan struct{})
	var wg sync.WaitGroup
	var loadMu sync.Mutex
	loadCodes := map[int]int{}
	for range 2 {
		wg.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				code, _, err := fasthttp.GetTimeout(nil, front+"/hello/load", 10*time.Second)
				if err != nil {
					code = -1
				}
				loadMu.Lock()
				loadCodes[code]++
				loadMu.Unlock()
			}
		})
	}
	defer func() {
		close(done)
		wg.Wait()
		loadMu.Lock()
		defer loadMu.Unlock()
		if loadCodes[200] == 0 || len(loadCodes) != 1 {
			t.Errorf("the load's answers by status: %v; want 200s only", loadCodes)
		}
	}()

	// Log in.
	url := "http://" + s.adminLn.Addr().String() + "/"
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#login")),
		chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#lanes"))); err != nil {
		t.Fatalf("logging in to the dashboard: %v", err)
	}
	browsertest.WaitFor(ctx, t, "the charts' first sample", `+document.getElementById('charts').dataset.points >= 1`, 30*time.Second, "#sec-charts")
	browsertest.WaitFor(ctx, t, "the load counted in lane default's row",
		`(() => { const tr = [...document.querySelectorAll('#lanes tr')].find(r => r.children[0].textContent === 'default');
			return tr && +tr.children[7].textContent > 0; })()`, 30*time.Second, "#lanes")

	// A hung request: shown live with its time left, then killed.
	hung := make(chan int, 1)
	go func() {
		code, _, err := fasthttp.GetTimeout(nil, front+"/hello/sleep?d=1h", time.Minute)
		if err != nil {
			code = -1
		}
		hung <- code
	}()
	browsertest.WaitFor(ctx, t, "the hung request in flight",
		`document.getElementById('inflight').textContent.includes('/hello/sleep')`, 30*time.Second, "#inflight")
	inflight := browsertest.Text(ctx, t, "#inflight")
	for _, want := range []string{"slow", "GET", "/hello/sleep", "of 10", "127.0.0.1"} {
		if !strings.Contains(inflight, want) {
			t.Errorf("in-flight table lacks %q:\n%s", want, inflight)
		}
	}
	browsertest.Screenshot(ctx, t, "1-hung-request")

	select {
	case code := <-hung:
		if code != 504 {
			t.Fatalf("hung request answered %d, want 504", code)
		}
	case <-time.After(time.Minute):
		t.Fatal("the hung request was not ended by request_timeout")
	}
	browsertest.WaitFor(ctx, t, "the kill event",
		`[...document.querySelectorAll('#events tr')].some(tr => tr.textContent.includes('kill') && tr.textContent.includes('GET /hello/sleep'))`,
		30*time.Second, "#events")
	browsertest.WaitFor(ctx, t, "the hung request gone from the in-flight table",
		`!document.getElementById('inflight').textContent.includes('/hello/sleep')`, 30*time.Second, "#inflight")
	events := browsertest.Text(ctx, t, "#events")
	for _, want := range []string{"kill", "slow", "GET /hello/sleep", "request_timeout 10s"} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %q:\n%s", want, events)
		}
	}
	if n := browsertest.Eval[int](ctx, t, `[...document.querySelectorAll('#events td.bad')].filter(td => td.textContent === 'kill').length`); n != 1 {
		t.Errorf("%d kill cells in red, want 1", n)
	}
	browsertest.Screenshot(ctx, t, "2-kill-event")

	// Resize lane default from the page; the lane and the events see it.
	browsertest.Click(ctx, t, `#lanes button[data-act*='"kind":"resize"'][data-act*='"lane":"default"']`, 30*time.Second)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#action-max"))); err != nil {
		t.Fatalf("opening the resize form: %v", err)
	}
	browsertest.Eval[int](ctx, t, `document.getElementById('action-max').value = '5'; 0`)
	browsertest.Click(ctx, t, "#action-go", 30*time.Second)
	browsertest.WaitFor(ctx, t, "the resize's answer",
		`document.getElementById('action-msg').textContent.includes('Lane default resized: min_workers 2, max_workers 5')`, 30*time.Second, "#action-msg")
	if st := laneStatus(s, "default"); st.MinWorkers != 2 || st.MaxWorkers != 5 {
		t.Errorf("lane default after the resize from the page: min %d max %d, want 2 and 5", st.MinWorkers, st.MaxWorkers)
	}
	browsertest.WaitFor(ctx, t, "the resize in the lanes table and the events",
		`[...document.querySelectorAll('#lanes tr')].some(tr => tr.children[0].textContent === 'default' && tr.children[2].textContent.endsWith('/2/5'))
		&& document.getElementById('events').textContent.includes('resize')`, 30*time.Second, "#sec-lanes")
	// The charts have gone on sampling under the load.
	browsertest.WaitFor(ctx, t, "a second sample in the charts", `+document.getElementById('charts').dataset.points >= 2`, 30*time.Second, "#sec-charts")
	browsertest.Screenshot(ctx, t, "3-resized")
}
