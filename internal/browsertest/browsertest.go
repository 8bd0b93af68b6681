// Package browsertest runs the dashboard's tests in a real headless
// Chromium (chromedp): it finds the browser, starts it, waits on
// conditions in the page, and keeps screenshots as test artefacts. Tests
// only; it skips a test, saying why, where no Chromium can be had.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium finds a Chromium or Chrome binary: $LANES_CHROMIUM, else the
// usual names on PATH; "" when there is none.
func Chromium() string {
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

// Start starts a headless Chromium for t (a window of 1400×1000) and
// returns its context, which ends after timeout or with the test. It skips
// t in -short mode or when no Chromium is found.
func Start(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	bin := Chromium()
	if bin == "" {
		t.Skip("no Chromium binary found (install the Debian package \"chromium\", or set LANES_CHROMIUM); dashboard browser test skipped")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, tcancel := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() { tcancel(); cancel(); acancel() })
	return ctx
}

// Text is the text content of the first element sel matches.
func Text(ctx context.Context, t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// Eval evaluates js in the page.
func Eval[T any](ctx context.Context, t *testing.T, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// WaitFor waits until the JavaScript expression js is truthy in the page,
// checking it every 100 ms, for at most d; past that it fails t, saying
// what it waited for and what the page's element show (a selector) says.
func WaitFor(ctx context.Context, t *testing.T, what, js string, d time.Duration, show string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(d))); err != nil {
		got := ""
		if show != "" {
			got, _ = chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || '(no %s)'`, show, show)))
		}
		t.Fatalf("waiting for %s: %v\n%s: %s", what, err, show, got)
	}
}

// Click clicks the element sel matches. The dashboard rebuilds its tables
// on every refresh, so the node found may be gone before the click lands
// ("Could not find node"): then it is found again and clicked again, for
// at most d.
func Click(ctx context.Context, t *testing.T, sel string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel)))
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "find node") || time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("click %s: %v", sel, err)
		}
	}
}

// Screenshot saves the whole page as NAME.png among the artefacts and logs
// where.
func Screenshot(ctx context.Context, t *testing.T, name string) string {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(ArtifactDir(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// ArtifactDir is where t keeps its artefacts, created if need be:
// $LANES_TEST_ARTIFACTS/TEST, else bin/test-artifacts/TEST at the root of
// the repository (bin/ is not committed).
func ArtifactDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("LANES_TEST_ARTIFACTS")
	if base == "" {
		root, err := repoRoot()
		if err != nil {
			t.Fatalf("artefacts: %v", err)
		}
		base = filepath.Join(root, "bin", "test-artifacts")
	}
	dir := filepath.Join(base, strings.Trim(unsafeName.ReplaceAllString(t.Name(), "_"), "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artefacts: %v", err)
	}
	return dir
}

// repoRoot is the nearest directory above the working directory (a test's
// package directory) that holds go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = up
	}
}
