package admin

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds a Chromium or Chrome binary: $LANES_CHROMIUM, else the
// usual names on PATH.
func chromium() string {
	if p := os.Getenv("LANES_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestDashboardInBrowser loads the dashboard in headless Chromium against
// a server with a token: before the token is typed the page shows a form
// and no data; after, the lanes and the mappings, with a client-supplied
// pattern shown as text, not markup; a refused token asks again.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	bin := chromium()
	if bin == "" {
		t.Skip("no Chromium binary found (install the Debian package \"chromium\", or set LANES_CHROMIUM); dashboard browser test skipped")
	}

	s, _ := newServer(t, testToken)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln) //nolint:errcheck // returns nil after Shutdown
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	url := "http://" + ln.Addr().String() + "/"

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, tcancel := context.WithTimeout(ctx, 60*time.Second)
	defer tcancel()

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

func text(ctx context.Context, t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func eval[T any](ctx context.Context, t *testing.T, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}
