package theme

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
)

func TestRules(t *testing.T) {
	tests := []struct {
		name   string
		rules  []config.ThemeRule
		want   []string
		unwant []string
	}{{
		name:   "replace",
		rules:  []config.ThemeRule{{Kind: "replace", Theme: "#content", Content: "#content"}},
		want:   []string{`<main id="content"><p>Hello, world</p><div class="ad">buy now</div></main>`, "Site header", "Site footer", "<title>Theme title</title>"},
		unwant: []string{"theme filler", "page nav"},
	}, {
		name:   "title",
		rules:  []config.ThemeRule{{Kind: "title"}},
		want:   []string{"<title>Page title</title>", "theme filler"},
		unwant: []string{"Theme title", "Hello, world"},
	}, {
		name:  "append",
		rules: []config.ThemeRule{{Kind: "append", Theme: "head", Content: "head link, head style"}},
		want: []string{`<link rel="stylesheet" href="/theme.css"/><style>p{color:red}</style><link rel="stylesheet" href="/page.css"/></head>`,
			"theme filler"},
		unwant: []string{"Hello, world"},
	}, {
		name:   "drop theme",
		rules:  []config.ThemeRule{{Kind: "drop", Theme: ".placeholder"}},
		want:   []string{"Site header", "theme filler"},
		unwant: []string{"theme placeholder", "placeholder"},
	}, {
		name: "drop content before replace",
		rules: []config.ThemeRule{
			{Kind: "replace", Theme: "#content", Content: "#content"},
			{Kind: "drop", Theme: ".placeholder", Content: ".ad"},
		},
		want:   []string{`<main id="content"><p>Hello, world</p></main>`},
		unwant: []string{"buy now", "theme placeholder"},
	}, {
		name:  "all",
		rules: testRules,
		want: []string{"<title>Page title</title>", `<main id="content"><p>Hello, world</p>`,
			`<style>p{color:red}</style><link rel="stylesheet" href="/page.css"/></head>`, "Site footer"},
		unwant: []string{"theme placeholder", "theme filler", "Theme title", "page nav"},
	}, {
		name:   "theme selectors that match nothing leave the theme as it is",
		rules:  []config.ThemeRule{{Kind: "replace", Theme: "#nowhere", Content: "#content"}, {Kind: "append", Theme: "#nowhere", Content: "p"}},
		want:   []string{"theme filler", "Theme title"},
		unwant: []string{"Hello, world"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newFilter(t, tc.rules, Options{})
			r := htmlResp(testContent)
			res := f.Apply(context.Background(), false, r)
			if res.State != shared.ThemeFresh {
				t.Fatalf("state %q, want fresh", res.State)
			}
			body := string(r.Body())
			for _, w := range tc.want {
				contains(t, body, w)
			}
			for _, u := range tc.unwant {
				lacks(t, body, u)
			}
		})
	}
}

func TestTitleAddedWhenThemeHasNone(t *testing.T) {
	f, fd := newFilter(t, []config.ThemeRule{{Kind: "title"}}, Options{})
	fd.set("v1", shared.ThemeFresh, `<html><head><meta charset="utf-8"></head><body>x</body></html>`)
	r := htmlResp(testContent)
	f.Apply(context.Background(), false, r)
	contains(t, string(r.Body()), `<meta charset="utf-8"/><title>Page title</title></head>`)
}

func TestAppendTakesOutermostMatches(t *testing.T) {
	f, _ := newFilter(t, []config.ThemeRule{{Kind: "append", Theme: "footer", Content: "#content, #content p"}}, Options{})
	r := htmlResp(testContent)
	f.Apply(context.Background(), false, r)
	contains(t, string(r.Body()), `Site footer<div id="content"><p>Hello, world</p><div class="ad">buy now</div></div></footer>`)
}

func TestGzipInput(t *testing.T) {
	f, _ := newFilter(t, testRules, Options{})
	r := new(fasthttp.Response)
	r.Header.SetContentType("text/html")
	r.Header.SetContentEncoding("gzip")
	r.Header.Set("Vary", "Accept-Encoding")
	r.SetBody(gz(t, testContent))
	if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeFresh {
		t.Fatalf("state %q", res.State)
	}
	got := onWire(t, r)
	if ce := got.Header.ContentEncoding(); len(ce) != 0 {
		t.Errorf("Content-Encoding %q after decoding", ce)
	}
	contains(t, string(got.Body()), "<title>Page title</title>")
	contains(t, string(got.Body()), "Hello, world")
}

func TestGzipBombPassesThrough(t *testing.T) {
	f, _ := newFilter(t, testRules, Options{MaxBody: 4 << 10})
	big := testContent + strings.Repeat("<p>padding</p>", 2000)
	zipped := gz(t, big)
	r := new(fasthttp.Response)
	r.Header.SetContentType("text/html")
	r.Header.SetContentEncoding("gzip")
	r.SetBody(zipped)
	res := f.Apply(context.Background(), false, r)
	if res.State != shared.ThemeUnthemed {
		t.Errorf("state %q, want unthemed", res.State)
	}
	if !bytes.Equal(r.Body(), zipped) || string(r.Header.ContentEncoding()) != "gzip" {
		t.Errorf("gzip body over the limit once decoded was changed")
	}
}

func TestOptOut(t *testing.T) {
	f, fd := newFilter(t, testRules, Options{})
	for _, name := range []string{"X-Lanes-Theme", "x-lanes-theme"} {
		r := htmlResp(testContent, name, "off")
		r.Header.DisableNormalizing()
		if res := f.Apply(context.Background(), false, r); res.State != "" {
			t.Errorf("%s: off: state %q, want pass-through", name, res.State)
		}
		if string(r.Body()) != testContent {
			t.Errorf("%s: off: body changed", name)
		}
		if v := r.Header.Peek(name); v != nil {
			t.Errorf("%s: header passed on: %q", name, v)
		}
	}
	if n := fd.calls.Load(); n != 0 {
		t.Errorf("fetchd asked %d times for opted-out responses", n)
	}
	r := htmlResp(testContent, "X-Lanes-Theme", "on")
	if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeFresh {
		t.Errorf("on: state %q, want fresh", res.State)
	}
	if v := r.Header.Peek("X-Lanes-Theme"); v != nil {
		t.Errorf("header passed on: %q", v)
	}
}

func TestPassThrough(t *testing.T) {
	const limit = 1 << 10
	big := testContent + strings.Repeat("<p>more</p>", limit)
	tests := []struct {
		name string
		head bool
		resp func() *fasthttp.Response
	}{
		{"json", false, func() *fasthttp.Response {
			r := htmlResp(`{"a":1}`)
			r.Header.SetContentType("application/json")
			return r
		}},
		{"no content type", false, func() *fasthttp.Response {
			r := new(fasthttp.Response)
			r.Header.SetNoDefaultContentType(true)
			r.SetBodyString(testContent)
			return r
		}},
		{"404", false, func() *fasthttp.Response {
			r := htmlResp(testContent)
			r.SetStatusCode(404)
			return r
		}},
		{"302", false, func() *fasthttp.Response {
			r := htmlResp(testContent)
			r.SetStatusCode(302)
			return r
		}},
		{"206", false, func() *fasthttp.Response {
			r := htmlResp(testContent)
			r.SetStatusCode(206)
			return r
		}},
		{"HEAD", true, func() *fasthttp.Response { return htmlResp(testContent) }},
		{"brotli", false, func() *fasthttp.Response { return htmlResp(testContent, "Content-Encoding", "br") }},
		{"oversize in memory", false, func() *fasthttp.Response { return htmlResp(big) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, fd := newFilter(t, testRules, Options{MaxBody: limit})
			r := tc.resp()
			before := r.Header.String()
			body := string(r.Body())
			if res := f.Apply(context.Background(), tc.head, r); res != (Result{}) {
				t.Errorf("result %+v, want pass-through", res)
			}
			if string(r.Body()) != body || r.Header.String() != before {
				t.Errorf("response changed:\n%s%s", r.Header.String(), r.Body())
			}
			if fd.calls.Load() != 0 {
				t.Errorf("fetchd asked for a pass-through response")
			}
		})
	}
}

func TestOversizeStreamsOn(t *testing.T) {
	const limit = 1 << 10
	big := testContent + strings.Repeat("<p>more</p>", limit)
	tests := []struct {
		name   string
		length int
		stream func() io.Reader
	}{
		{"announced length", len(big), func() io.Reader { return &streamBody{r: strings.NewReader(big)} }},
		{"chunked unreader", -1, func() io.Reader { return &unreadBody{streamBody{r: strings.NewReader(big)}} }},
		{"chunked plain reader", -1, func() io.Reader { return io.MultiReader(strings.NewReader(big)) }},
		{"chunked closer without unread", -1, func() io.Reader { return &streamBody{r: strings.NewReader(big)} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newFilter(t, testRules, Options{MaxBody: limit})
			r := htmlResp("")
			s := tc.stream()
			r.SetBodyStream(s, tc.length)
			if res := f.Apply(context.Background(), false, r); res != (Result{}) {
				t.Errorf("result %+v, want pass-through", res)
			}
			if !r.IsBodyStream() {
				t.Fatal("body no longer streams")
			}
			if sb, ok := s.(interface{ Close() error }); ok && tc.name != "chunked plain reader" {
				if c, _ := sb.(*streamBody); c != nil && c.closed.Load() {
					t.Error("stream closed")
				}
				if c, _ := sb.(*unreadBody); c != nil && c.closed.Load() {
					t.Error("stream closed")
				}
			}
			got, err := io.ReadAll(r.BodyStream())
			if err != nil || string(got) != big {
				t.Errorf("streamed %d bytes (%v), want the %d of the body", len(got), err, len(big))
			}
			if cl := r.Header.ContentLength(); cl != tc.length {
				t.Errorf("Content-Length %d, want %d", cl, tc.length)
			}
		})
	}
}

func TestStreamedBodyThemed(t *testing.T) {
	for _, length := range []int{len(testContent), -1} {
		f, _ := newFilter(t, testRules, Options{})
		r := htmlResp("")
		s := &unreadBody{streamBody{r: strings.NewReader(testContent)}}
		r.SetBodyStream(s, length)
		if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeFresh {
			t.Fatalf("length %d: state %q", length, res.State)
		}
		if !s.closed.Load() {
			t.Errorf("length %d: upstream stream not closed after it was read", length)
		}
		got := onWire(t, r)
		contains(t, string(got.Body()), "Hello, world")
		if cl := got.Header.ContentLength(); cl != len(got.Body()) {
			t.Errorf("length %d: Content-Length %d for a %d-byte body", length, cl, len(got.Body()))
		}
	}
}

func TestBrokenStreamStaysBroken(t *testing.T) {
	f, _ := newFilter(t, testRules, Options{})
	boom := errors.New("upstream reset")
	r := htmlResp("")
	r.SetBodyStream(&unreadBody{streamBody{r: io.MultiReader(strings.NewReader("<html>partial"), errReader{boom})}}, -1)
	if res := f.Apply(context.Background(), false, r); res != (Result{}) {
		t.Errorf("result %+v, want pass-through", res)
	}
	got, err := io.ReadAll(r.BodyStream())
	if string(got) != "<html>partial" || !errors.Is(err, boom) {
		t.Errorf("stream gave %q, %v; want the partial body, then the error", got, err)
	}
}

func TestHeadersOfThemedResponse(t *testing.T) {
	f, _ := newFilter(t, testRules, Options{})
	r := htmlResp(testContent,
		"ETag", `"abc123"`,
		"Content-MD5", "Q2hlY2sgSW50ZWdyaXR5IQ==",
		"Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT",
		"Accept-Ranges", "bytes",
		"Cache-Control", "max-age=60")
	f.Apply(context.Background(), false, r)
	got := onWire(t, r)
	for _, h := range []string{"ETag", "Content-MD5", "Accept-Ranges"} {
		if v := got.Header.Peek(h); v != nil {
			t.Errorf("%s passed on the themed body: %q", h, v)
		}
	}
	for h, want := range map[string]string{"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT", "Cache-Control": "max-age=60"} {
		if v := string(got.Header.Peek(h)); v != want {
			t.Errorf("%s = %q, want %q", h, v, want)
		}
	}
	if cl := got.Header.ContentLength(); cl != len(got.Body()) || cl == len(testContent) {
		t.Errorf("Content-Length %d for a %d-byte themed body", cl, len(got.Body()))
	}
	if want := strconv.Itoa(len(got.Body())); string(got.Header.Peek("Content-Length")) != want {
		t.Errorf("Content-Length header %q, want %s", got.Header.Peek("Content-Length"), want)
	}
}

func TestUnthemedKeepsHeaders(t *testing.T) {
	f, fd := newFilter(t, testRules, Options{})
	fd.set("", shared.ThemeUnthemed, "")
	r := htmlResp(testContent, "ETag", `"abc"`)
	if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeUnthemed {
		t.Errorf("state %q, want unthemed", res.State)
	}
	got := onWire(t, r)
	if string(got.Body()) != testContent || string(got.Header.Peek("ETag")) != `"abc"` {
		t.Errorf("unthemed response changed: %s%s", got.Header.String(), got.Body())
	}
}

func TestUnthemedKeepsStreaming(t *testing.T) {
	f, fd := newFilter(t, testRules, Options{})
	fd.fail(errors.New("connection refused"))
	r := htmlResp("")
	s := &unreadBody{streamBody{r: strings.NewReader(testContent)}}
	r.SetBodyStream(s, -1)
	if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeUnthemed {
		t.Errorf("state %q, want unthemed", res.State)
	}
	if !r.IsBodyStream() || s.closed.Load() {
		t.Fatal("an unthemed body was taken out of its stream")
	}
	if got, err := io.ReadAll(r.BodyStream()); err != nil || string(got) != testContent {
		t.Errorf("streamed %q, %v", got, err)
	}
}

func TestFetchdDownKeepsLastCopy(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	f, fd := newFilter(t, testRules, Options{RetryAfter: time.Second, now: clock})

	r := htmlResp(testContent)
	if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeFresh {
		t.Fatalf("state %q, want fresh", res.State)
	}
	fd.fail(errors.New("connection refused"))
	for i := range 3 {
		r := htmlResp(testContent)
		if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeStale {
			t.Fatalf("request %d with fetchd down: state %q, want stale", i, res.State)
		}
		contains(t, string(r.Body()), "<title>Page title</title>")
		contains(t, string(r.Body()), "Site footer")
	}
	if n := fd.calls.Load(); n != 2 {
		t.Errorf("fetchd asked %d times; want 2 (once up, once down, then a pause)", n)
	}
	advance(2 * time.Second)
	fd.fail(nil)
	f.Apply(context.Background(), false, htmlResp(testContent))
	if n := fd.calls.Load(); n != 3 {
		t.Errorf("fetchd asked %d times; want it asked again after RetryAfter", n)
	}
	if n := f.Parses(); n != 1 {
		t.Errorf("%d parses, want 1", n)
	}
}

// While fetchd's answer says the copy is fresh until some time, the filter
// does not ask it again before then (fetchd fetches nothing meanwhile);
// after that, and after a stale answer, it asks on every request again.
func TestFreshCopyNotAskedAgain(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	f, fd := newFilter(t, testRules, Options{now: clock})
	fd.mu.Lock()
	fd.doc.FreshUntil = now.Add(5 * time.Second)
	fd.mu.Unlock()

	for i := range 5 {
		r := htmlResp(testContent)
		if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeFresh {
			t.Fatalf("request %d: state %q, want fresh", i, res.State)
		}
		contains(t, string(r.Body()), "Site footer")
	}
	if n := fd.calls.Load(); n != 1 {
		t.Errorf("fetchd asked %d times within the fresh window; want 1", n)
	}
	// Past the window fetchd is asked; its copy is stale now.
	advance(6 * time.Second)
	fd.mu.Lock()
	fd.doc.State, fd.doc.FreshUntil = shared.ThemeStale, time.Time{}
	fd.mu.Unlock()
	for range 2 {
		if res := f.Apply(context.Background(), false, htmlResp(testContent)); res.State != shared.ThemeStale {
			t.Fatalf("state %q after the window, want stale", res.State)
		}
	}
	if n := fd.calls.Load(); n != 3 {
		t.Errorf("fetchd asked %d times; want every request asking once the copy is stale (3)", n)
	}
	// A new version, fresh again: adopted, and again not asked meanwhile.
	fd.set("v2", shared.ThemeFresh, strings.Replace(testTheme, "Site footer", "New footer", 1))
	fd.mu.Lock()
	fd.doc.FreshUntil = now.Add(time.Hour)
	fd.mu.Unlock()
	for range 3 {
		r := htmlResp(testContent)
		f.Apply(context.Background(), false, r)
		contains(t, string(r.Body()), "New footer")
	}
	if n := fd.calls.Load(); n != 4 {
		t.Errorf("fetchd asked %d times; want 4 (once for the new version)", n)
	}
}

func TestWarmKeepsCopyForFetchdOutage(t *testing.T) {
	f, fd := newFilter(t, testRules, Options{})
	f.Warm(context.Background())
	if n := f.Parses(); n != 1 {
		t.Fatalf("Warm parsed %d times, want 1", n)
	}
	fd.fail(errors.New("connection refused"))
	r := htmlResp(testContent)
	if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeStale {
		t.Fatalf("first page with fetchd down after Warm: state %q, want stale", res.State)
	}
	contains(t, string(r.Body()), "Site footer")

	// A failed Warm leaves nothing behind: the first page asks fetchd.
	g, gd := newFilter(t, testRules, Options{})
	gd.fail(errors.New("connection refused"))
	g.Warm(context.Background())
	gd.fail(nil)
	if res := g.Apply(context.Background(), false, htmlResp(testContent)); res.State != shared.ThemeFresh {
		t.Errorf("first page after a failed Warm: state %q, want fresh", res.State)
	}
}

func TestNeverHadThemeUnthemedFast(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		// A refused fetchd answers at once: the request must not wait for
		// the ask timeout (10 s here, so a slow machine cannot pass for
		// a waiting filter).
		const ask = 10 * time.Second
		f, fd := newFilter(t, testRules, Options{AskTimeout: ask})
		fd.fail(errors.New("connection refused"))
		r := htmlResp(testContent)
		start := time.Now()
		res := f.Apply(context.Background(), false, r)
		if res.State != shared.ThemeUnthemed || string(r.Body()) != testContent || r.StatusCode() != 200 {
			t.Errorf("state %q status %d; want the content unthemed", res.State, r.StatusCode())
		}
		if d := time.Since(start); d > ask/10 {
			t.Errorf("took %v: waited for the ask timeout (%v) although fetchd refused", d, ask)
		}
	})
	t.Run("hung", func(t *testing.T) {
		const askHung = 300 * time.Millisecond
		f, fd := newFilter(t, testRules, Options{AskTimeout: askHung})
		fd.hang = true
		for i := range 3 {
			r := htmlResp(testContent)
			start := time.Now()
			res := f.Apply(context.Background(), false, r)
			d := time.Since(start)
			if res.State != shared.ThemeUnthemed || string(r.Body()) != testContent {
				t.Errorf("request %d: state %q; want the content unthemed", i, res.State)
			}
			// The first request waits the ask timeout, later ones
			// not at all: a ratio, not a wall-clock bound.
			if i > 0 && d > askHung/3 {
				t.Errorf("request %d after a timed-out ask took %v; want no wait (the ask timeout is %v)", i, d, askHung)
			} else if i == 0 && d > 20*askHung {
				t.Errorf("first request took %v for an ask timeout of %v", d, askHung)
			}
		}
		if n := fd.calls.Load(); n != 1 {
			t.Errorf("fetchd asked %d times, want 1", n)
		}
	})
	t.Run("no fetchd", func(t *testing.T) {
		f, err := New(config.Theme{Name: "main", Rules: testRules}, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		r := htmlResp(testContent)
		if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeUnthemed || string(r.Body()) != testContent {
			t.Errorf("state %q", res.State)
		}
	})
}

func TestVersionChangeParsesOnce(t *testing.T) {
	f, fd := newFilter(t, testRules, Options{})
	apply := func() (string, string) {
		r := htmlResp(testContent)
		res := f.Apply(context.Background(), false, r)
		return res.State, string(r.Body())
	}
	for range 5 {
		apply()
	}
	if n := f.Parses(); n != 1 {
		t.Fatalf("%d parses after 5 requests on v1, want 1", n)
	}
	fd.set("v2", shared.ThemeStale, strings.Replace(testTheme, "Site footer", "New footer", 1))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			state, body := apply()
			if state != shared.ThemeStale || !strings.Contains(body, "New footer") {
				t.Errorf("state %q, body without the v2 footer", state)
			}
		})
	}
	wg.Wait()
	if n := f.Parses(); n != 2 {
		t.Errorf("%d parses after the change to v2, want 2", n)
	}
}

func TestConcurrentApply(t *testing.T) {
	f, fd := newFilter(t, testRules, Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 30 {
				if g == 0 && i == 10 {
					fd.set("v2", shared.ThemeFresh, strings.Replace(testTheme, "Site footer", "New footer", 1))
				}
				r := htmlResp(testContent)
				res := f.Apply(context.Background(), false, r)
				body := string(r.Body())
				if res.State != shared.ThemeFresh || !strings.Contains(body, "Hello, world") ||
					!strings.Contains(body, "footer</footer>") {
					t.Errorf("state %q body %q", res.State, body)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := f.Parses(); n != 2 {
		t.Errorf("%d parses for two versions, want 2", n)
	}
}

func TestInvalidSelector(t *testing.T) {
	for _, r := range []config.ThemeRule{
		{Kind: "replace", Theme: "#content[", Content: "#content"},
		{Kind: "append", Theme: "head", Content: "::nope"},
		{Kind: "replace", Theme: "#content"},
		{Kind: "explode"},
	} {
		if _, err := New(config.Theme{Name: "main", Rules: []config.ThemeRule{r}}, nil, Options{}); err == nil {
			t.Errorf("%+v: no error", r)
		} else if !strings.Contains(err.Error(), "theme main: rule 1") {
			t.Errorf("%+v: error %q does not say which rule", r, err)
		}
	}
}

func TestCloneKeepsTheSource(t *testing.T) {
	f, _ := newFilter(t, testRules, Options{})
	f.Apply(context.Background(), false, htmlResp(testContent))
	p := f.cur.Load()
	var before bytes.Buffer
	if err := renderNode(&before, p.root); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		f.Apply(context.Background(), false, htmlResp(testContent))
	}
	var after bytes.Buffer
	if err := renderNode(&after, p.root); err != nil {
		t.Fatal(err)
	}
	if before.String() != after.String() {
		t.Errorf("the parsed theme changed under requests:\n%s\n%s", before.String(), after.String())
	}
	if c := countNodes(clone(p.root, p.nodes)); c != p.nodes {
		t.Errorf("clone has %d nodes, want %d", c, p.nodes)
	}
}

func TestFragmentNotThemed(t *testing.T) {
	f, _ := newFilter(t, testRules, Options{})
	const frag = `<li class="row">new row</li>`
	r := htmlResp(frag)
	if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeUnthemed {
		t.Errorf("state %q, want unthemed", res.State)
	}
	if string(r.Body()) != frag {
		t.Errorf("fragment changed: %q", r.Body())
	}
	// Without a replace rule every page is themed.
	f, _ = newFilter(t, []config.ThemeRule{{Kind: "append", Theme: "footer", Content: "li"}}, Options{})
	r = htmlResp(frag)
	if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeFresh {
		t.Errorf("append only: state %q, want fresh", res.State)
	}
	contains(t, string(r.Body()), `Site footer<li class="row">new row</li></footer>`)
}
