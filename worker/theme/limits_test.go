package theme

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/text/encoding/japanese"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/themepage"
)

// hugeTheme is the adversarial round's theme (issue 15, item 5): testTheme
// with 400,000 more elements, 3.2 MB, under fetchd's 4 MiB cap.
func hugeTheme() string {
	return strings.Replace(testTheme, "<footer>", strings.Repeat("<i>x</i>", 400_000)+"<footer>", 1)
}

// heapInUse returns the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// A theme version past the limits is refused without a DOM being built:
// the copy in use stays, the page is neither parsed nor asked for again,
// and the worker's heap stays where it was.
func TestHugeThemeRefusedKeepsLastCopy(t *testing.T) {
	f, fd := newFilter(t, testRules, Options{})
	if res := f.Apply(context.Background(), false, htmlResp(testContent)); res.State != shared.ThemeFresh {
		t.Fatalf("state %q, want fresh", res.State)
	}
	fd.set("v2", shared.ThemeFresh, hugeTheme())
	base := heapInUse()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 25 {
				r := htmlResp(testContent)
				res := f.Apply(context.Background(), false, r)
				if res.State != shared.ThemeStale || !strings.Contains(string(r.Body()), "Site footer") ||
					strings.Contains(string(r.Body()), "<i>x</i>") {
					t.Errorf("state %q: want the v1 copy, served as stale", res.State)
					return
				}
			}
		})
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapInuse) - int64(base)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("100 requests with a 400k-element theme version on offer: heap in use %+.1f MB, %.1f MB allocated",
		float64(growth)/(1<<20), float64(alloc)/(1<<20))
	if n := f.Parses(); n != 1 {
		t.Errorf("%d parses, want 1 (v1 only)", n)
	}
	if n := f.Refusals(); n != 1 {
		t.Errorf("%d refusals, want 1", n)
	}
	if growth > 16<<20 {
		t.Errorf("heap grew %d MB", growth>>20)
	}
	// The fake fetchd, like fetchd, sends no page to a caller that names
	// its version: once refused, the page is not sent again.
	if alloc > 64<<20 {
		t.Errorf("%d MB allocated for 100 requests", alloc>>20)
	}

	// The next version within the limits is taken.
	fd.set("v3", shared.ThemeFresh, strings.Replace(testTheme, "Site footer", "New footer", 1))
	r := htmlResp(testContent)
	if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeFresh || !strings.Contains(string(r.Body()), "New footer") {
		t.Errorf("v3: state %q, body %s", res.State, r.Body())
	}
}

// A worker that has no copy yet serves unthemed rather than the huge page.
func TestHugeThemeFirstCopyUnthemed(t *testing.T) {
	f, fd := newFilter(t, testRules, Options{})
	fd.set("v1", shared.ThemeFresh, hugeTheme())
	r := htmlResp(testContent)
	if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeUnthemed || string(r.Body()) != testContent {
		t.Errorf("state %q, want the page unthemed as it came", res.State)
	}
	if f.Parses() != 0 || f.Refusals() != 1 {
		t.Errorf("%d parses, %d refusals; want 0 and 1", f.Parses(), f.Refusals())
	}
}

// TestParsedThemeMemory measures what a theme at the limits costs a worker:
// held once, plus a clone per request being themed.
func TestParsedThemeMemory(t *testing.T) {
	lim := themepage.Default
	var b strings.Builder
	b.WriteString(`<!doctype html><html><head><title>t</title></head><body><main id="content"></main>`)
	// 19,990 elements of 5 attributes each (the attribute limit) and text.
	for i := range lim.MaxElements - 10 {
		fmt.Fprintf(&b, `<span a="%d" b="x" c="y" d="z" e="w">text</span>`, i)
	}
	b.WriteString(`</body></html>`)
	page := b.String()
	if _, err := themepage.Scan([]byte(page), lim); err != nil {
		t.Fatal(err)
	}
	f, fd := newFilter(t, testRules, Options{})
	fd.set("big", shared.ThemeFresh, page)
	base := heapInUse()
	f.Warm(context.Background())
	held := int64(heapInUse()) - int64(base)
	if f.Parses() != 1 {
		t.Fatalf("not parsed: %d refusals", f.Refusals())
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := htmlResp(testContent)
	f.Apply(context.Background(), false, r)
	runtime.ReadMemStats(&after)
	perRequest := after.TotalAlloc - before.TotalAlloc
	t.Logf("theme of %d bytes at the limits (%d nodes): %.1f MB held, %.1f MB allocated per themed request",
		len(page), f.cur.Load().nodes, float64(held)/(1<<20), float64(perRequest)/(1<<20))
	if held > 32<<20 || perRequest > 32<<20 {
		t.Errorf("held %d MB, %d MB per request", held>>20, perRequest>>20)
	}
}

// A theme and a content page in Shift_JIS come out as one UTF-8 page,
// labelled so.
func TestCharsets(t *testing.T) {
	// fetchd decodes the theme; its <meta> still names the old charset.
	theme := strings.Replace(testTheme, "<head>", `<head><meta charset="Shift_JIS">`, 1)
	theme = strings.Replace(theme, "Site footer", "サイトのフッター", 1)
	f, fd := newFilter(t, testRules, Options{})
	fd.set("sjis", shared.ThemeFresh, theme)

	content, err := japanese.ShiftJIS.NewEncoder().String(strings.Replace(testContent, "Hello, world", "こんにちは", 1))
	if err != nil {
		t.Fatal(err)
	}
	r := htmlResp(content)
	r.Header.SetContentType("text/html; charset=Shift_JIS")
	if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeFresh {
		t.Fatalf("state %q", res.State)
	}
	body := string(r.Body())
	contains(t, body, "こんにちは")
	contains(t, body, "サイトのフッター")
	contains(t, body, `<meta charset="utf-8"/>`)
	if ct := string(r.Header.ContentType()); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
}

// A content page that fails to theme on every request (nested past 512)
// logs one warning a second, not one per request.
func TestPerRequestWarningLimited(t *testing.T) {
	var buf syncBuffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Warn})
	f, _ := newFilter(t, testRules, Options{Log: log})
	page := `<html><body><div id="content">` + strings.Repeat("<div>", 600) + `</div></body></html>`
	start := time.Now()
	for range 100 {
		f.Apply(context.Background(), false, htmlResp(page))
	}
	f.Flush()
	secs := int(time.Since(start)/time.Second) + 1
	logged, suppressed := 0, 0
	for line := range strings.SplitSeq(buf.String(), "\n") {
		if strings.Contains(line, "theme: theming failed;") {
			logged++
		}
		if _, rest, ok := strings.Cut(line, "theme: "); ok {
			var n int
			if _, err := fmt.Sscanf(rest, "%d similar messages suppressed", &n); err == nil {
				suppressed += n
			}
		}
	}
	if logged > secs || logged+suppressed != 100 {
		t.Errorf("%d warnings in %d s for 100 requests (%d suppressed), want one a second and the rest counted:\n%s",
			logged, secs, suppressed, buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
