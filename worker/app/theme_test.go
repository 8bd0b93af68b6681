package app

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/worker/theme"
)

// staticThemes is a ThemeService that always has one page, as version v1.
type staticThemes struct{ page string }

func (s staticThemes) Theme(_ context.Context, name, have string) (shared.ThemeDoc, error) {
	doc := shared.ThemeDoc{Name: name, Version: "v1", State: shared.ThemeFresh, Fetched: time.Now()}
	if have != "v1" {
		doc.HTML = []byte(s.page)
	}
	return doc, nil
}

const appTheme = `<!DOCTYPE html><html><head><title>T</title><link rel="stylesheet" href="/t.css"></head>
<body><div class="placeholder">drop me</div><main id="content">filler</main><footer>THEME FOOTER</footer></body></html>`

var appThemeCfg = config.Theme{Name: "main", Rules: []config.ThemeRule{
	{Kind: "replace", Theme: "#content", Content: "#content"},
	{Kind: "title"},
	{Kind: "append", Theme: "head", Content: "head link, head style"},
	{Kind: "drop", Theme: ".placeholder"},
}}

func pageHTML(extra string) string {
	return `<html><head><title>Page</title><style>p{}</style></head><body><div id="content"><p>page text</p>` +
		extra + `</div></body></html>`
}

// themedApp runs an app with the test theme and debug headers in front of
// upstream (or the demo when upstream is "") and returns its address.
func themedApp(t *testing.T, upstream string, opt theme.Options) string {
	t.Helper()
	cfg := config.App{Theme: "main", UpstreamTimeout: 10 * time.Second}
	page := appTheme
	if upstream == "" {
		cfg.Demo = true
		page = demoTheme
	} else {
		cfg.Upstream = "http://" + upstream
	}
	a, err := New(cfg, testLogger(t), WithTheme(appThemeCfg, staticThemes{page}, opt), WithDebugHeaders(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return serve(t, a.Handler, nil)
}

func tget(t *testing.T, addr, method, path string) *fasthttp.Response {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + addr + path)
	resp := new(fasthttp.Response)
	resp.SkipBody = method == fasthttp.MethodHead
	c := &fasthttp.Client{MaxIdemponentCallAttempts: 1, DisableHeaderNamesNormalizing: false}
	if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func TestThemedProxy(t *testing.T) {
	const limit = 64 << 10
	big := pageHTML(strings.Repeat("<p>0123456789</p>", 20_000)) // 340 KB
	up := serve(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/page":
			ctx.SetContentType("text/html; charset=utf-8")
			ctx.Response.Header.Set("ETag", `"strong-1"`)
			ctx.Response.Header.Set("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
			ctx.SetBodyString(pageHTML(""))
		case "/chunked", "/big":
			body := pageHTML("")
			if string(ctx.Path()) == "/big" {
				body = big
			}
			ctx.SetContentType("text/html")
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				for i := 0; i < len(body); i += 1000 {
					w.WriteString(body[i:min(i+1000, len(body))])
					w.Flush()
				}
			})
		case "/gz":
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write([]byte(pageHTML("<p>zipped</p>")))
			zw.Close()
			ctx.SetContentType("text/html")
			ctx.Response.Header.Set("Content-Encoding", "gzip")
			ctx.SetBody(b.Bytes())
		case "/off":
			ctx.SetContentType("text/html")
			ctx.Response.Header.Set("X-Lanes-Theme", "off")
			ctx.SetBodyString(pageHTML(""))
		case "/json":
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"html":false}`)
		default:
			ctx.SetContentType("text/html")
			ctx.SetStatusCode(404)
			ctx.SetBodyString(pageHTML("not found"))
		}
	}, nil)
	addr := themedApp(t, up, theme.Options{MaxBody: limit})

	themed := func(path string, want ...string) {
		t.Helper()
		r := tget(t, addr, "GET", path)
		body := string(r.Body())
		if r.StatusCode() != 200 || string(r.Header.Peek("X-Theme")) != "fresh" {
			t.Errorf("%s: status %d X-Theme %q, want 200 fresh", path, r.StatusCode(), r.Header.Peek("X-Theme"))
		}
		for _, w := range append(want, "THEME FOOTER", "<title>Page</title>", "<p>page text</p>") {
			if !strings.Contains(body, w) {
				t.Errorf("%s: body lacks %q: %s", path, w, body)
			}
		}
		if strings.Contains(body, "drop me") {
			t.Errorf("%s: theme placeholder not dropped", path)
		}
		if cl := r.Header.ContentLength(); cl != len(body) {
			t.Errorf("%s: Content-Length %d for %d bytes", path, cl, len(body))
		}
		if us, err := strconv.Atoi(string(r.Header.Peek(shared.HeaderFilterTime))); err != nil || us < 1 {
			t.Errorf("%s: %s = %q, want microseconds", path, shared.HeaderFilterTime, r.Header.Peek(shared.HeaderFilterTime))
		}
		for _, h := range []string{"ETag", "Content-Encoding"} {
			if v := r.Header.Peek(h); v != nil {
				t.Errorf("%s: %s %q on a themed body", path, h, v)
			}
		}
	}
	themed("/page")
	themed("/chunked")
	themed("/gz", "<p>zipped</p>")
	if r := tget(t, addr, "GET", "/page"); string(r.Header.Peek("Last-Modified")) == "" {
		t.Error("Last-Modified dropped")
	}

	untouched := func(method, path string, status int, body string) *fasthttp.Response {
		t.Helper()
		r := tget(t, addr, method, path)
		if r.StatusCode() != status || string(r.Body()) != body {
			t.Errorf("%s %s: status %d, %d-byte body; want %d and the upstream's %d bytes",
				method, path, r.StatusCode(), len(r.Body()), status, len(body))
		}
		for _, h := range []string{"X-Theme", shared.HeaderFilterTime, "X-Lanes-Theme"} {
			if v := r.Header.Peek(h); v != nil {
				t.Errorf("%s %s: %s = %q on a response not themed", method, path, h, v)
			}
		}
		return r
	}
	untouched("GET", "/off", 200, pageHTML(""))
	untouched("GET", "/json", 200, `{"html":false}`)
	untouched("GET", "/missing", 404, pageHTML("not found"))
	untouched("HEAD", "/page", 200, "")
	if r := untouched("GET", "/big", 200, big); r.Header.ContentLength() != -1 {
		t.Errorf("/big: Content-Length %d; want it still streaming (chunked)", r.Header.ContentLength())
	}
	// The upstream connection of a themed body went back to the pool and
	// still works.
	themed("/page")
}

func TestThemedDemo(t *testing.T) {
	addr := themedApp(t, "", theme.Options{})
	r := tget(t, addr, "GET", "/")
	body := string(r.Body())
	for _, w := range []string{"<title>lanes demo</title>", `<main id="content">`, "/demo/hang", "lanes demo theme, served by the demo"} {
		if !strings.Contains(body, w) {
			t.Errorf("/: body lacks %q", w)
		}
	}
	if string(r.Header.Peek("X-Theme")) != "fresh" {
		t.Errorf("/: X-Theme %q", r.Header.Peek("X-Theme"))
	}
	if strings.Contains(body, "theme's own placeholder") {
		t.Error("/: theme placeholder kept")
	}

	r = tget(t, addr, "GET", "/demo/theme.html")
	if string(r.Body()) != demoTheme || r.Header.Peek("X-Theme") != nil || r.Header.Peek(theme.HeaderOptOut) != nil {
		t.Errorf("/demo/theme.html was themed or leaked its opt-out: %s", r.Header.String())
	}
	if n := len(demoTheme); n < 15<<10 || n > 30<<10 {
		t.Errorf("demo theme is %d bytes, want about 20 KB", n)
	}

	r = tget(t, addr, "GET", "/demo/sleep?ms=1")
	if string(r.Body()) != "slept 1 ms\n" || r.Header.Peek("X-Theme") != nil {
		t.Errorf("/demo/sleep: %q %s", r.Body(), r.Header.String())
	}
}

func TestUnthemedDemoThemePage(t *testing.T) {
	a, err := New(config.App{Demo: true}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	r := tget(t, serve(t, a.Handler, nil), "GET", "/demo/theme.html")
	if string(r.Body()) != demoTheme || r.Header.Peek(theme.HeaderOptOut) != nil {
		t.Errorf("without a theme: header %s", r.Header.String())
	}
}

func TestWithThemeNameMismatch(t *testing.T) {
	_, err := New(config.App{Demo: true, Theme: "other"}, testLogger(t), WithTheme(appThemeCfg, nil, theme.Options{}))
	if err == nil {
		t.Fatal("no error for a theme the app block does not name")
	}
	bad := appThemeCfg
	bad.Rules = []config.ThemeRule{{Kind: "replace", Theme: "#x[", Content: "#x"}}
	if _, err := New(config.App{Demo: true, Theme: "main"}, testLogger(t), WithTheme(bad, nil, theme.Options{})); err == nil {
		t.Fatal("no error for an invalid selector")
	}
}

// TestThemedExampleConfig keeps configs/themed.hcl loadable and its theme
// working on the demo: every selector compiles and the demo's / comes out
// themed with the demo's own theme page.
func TestThemedExampleConfig(t *testing.T) {
	cfg, diags := config.Load("../../configs/themed.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	var th *config.Theme
	for i := range cfg.Themes {
		if cfg.Themes[i].Name == cfg.App.Theme {
			th = &cfg.Themes[i]
		}
	}
	if th == nil || !cfg.App.Demo || !strings.HasSuffix(th.URL, "/demo_theme.html") {
		t.Fatalf("app %+v, theme %+v: want the demo themed from its own theme page (demo_theme.html)", cfg.App, th)
	}
	a, err := New(cfg.App, testLogger(t), WithTheme(*th, staticThemes{demoTheme}, theme.Options{}), WithDebugHeaders(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	r := tget(t, serve(t, a.Handler, nil), "GET", "/")
	if string(r.Header.Peek("X-Theme")) != "fresh" || !strings.Contains(string(r.Body()), "<title>lanes demo</title>") {
		t.Errorf("/ not themed: %s", r.Header.String())
	}
}
