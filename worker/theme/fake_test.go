package theme

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/html"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
)

// fakeFetchd is a ThemeService in memory. It answers the current doc (no
// HTML when the caller has its version), fails with err when set, or
// blocks until the caller's deadline when hang is set.
type fakeFetchd struct {
	mu    sync.Mutex
	doc   shared.ThemeDoc
	err   error
	hang  bool
	calls atomic.Int64
}

func (f *fakeFetchd) Theme(ctx context.Context, name, have string) (shared.ThemeDoc, error) {
	f.calls.Add(1)
	f.mu.Lock()
	doc, err, hang := f.doc, f.err, f.hang
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return shared.ThemeDoc{}, ctx.Err()
	}
	if err != nil {
		return shared.ThemeDoc{}, err
	}
	if doc.Name != name {
		return shared.ThemeDoc{}, errors.New("fake fetchd: unknown theme " + name)
	}
	if doc.Version == have {
		doc.HTML = nil
	}
	return doc, nil
}

// set makes html the current theme page, as version.
func (f *fakeFetchd) set(version, state, html string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.doc = shared.ThemeDoc{Name: "main", Version: version, State: state, Fetched: time.Now(), HTML: []byte(html)}
}

func (f *fakeFetchd) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

const testTheme = `<!DOCTYPE html>
<html><head><title>Theme title</title><link rel="stylesheet" href="/theme.css"></head>
<body><header>Site header</header><div class="placeholder">theme placeholder</div>
<main id="content"><p>theme filler</p></main>
<footer>Site footer</footer></body></html>`

const testContent = `<!DOCTYPE html>
<html><head><title>Page title</title><style>p{color:red}</style><link rel="stylesheet" href="/page.css"></head>
<body><nav>page nav</nav><div id="content"><p>Hello, world</p><div class="ad">buy now</div></div></body></html>`

// testRules is the design's example theme.
var testRules = []config.ThemeRule{
	{Kind: "replace", Theme: "#content", Content: "#content"},
	{Kind: "title"},
	{Kind: "append", Theme: "head", Content: "head link, head style"},
	{Kind: "drop", Theme: ".placeholder"},
}

// newFilter returns a filter for rules over a fake fetchd serving
// testTheme as version v1.
func newFilter(t testing.TB, rules []config.ThemeRule, opt Options) (*Filter, *fakeFetchd) {
	t.Helper()
	fd := &fakeFetchd{}
	fd.set("v1", shared.ThemeFresh, testTheme)
	if opt.Log == nil {
		opt.Log = hclog.NewNullLogger()
	}
	f, err := New(config.Theme{Name: "main", Rules: rules}, fd, opt)
	if err != nil {
		t.Fatal(err)
	}
	return f, fd
}

// htmlResp is a 200 text/html response with body in memory and the given
// extra headers (name, value, name, value...).
func htmlResp(body string, kv ...string) *fasthttp.Response {
	r := new(fasthttp.Response)
	r.Header.SetContentType("text/html; charset=utf-8")
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Set(kv[i], kv[i+1])
	}
	r.SetBodyString(body)
	return r
}

// onWire writes r as a server would and parses it back as a client would,
// so tests see the framing (Content-Length) the client gets.
func onWire(t testing.TB, r *fasthttp.Response) *fasthttp.Response {
	t.Helper()
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	if err := r.Write(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got := new(fasthttp.Response)
	if err := got.Read(bufio.NewReader(&b)); err != nil {
		t.Fatalf("read back %q: %v", b.String(), err)
	}
	return got
}

func gz(t testing.TB, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.WriteString(zw, s); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// streamBody is a body stream that is a Closer, optionally an Unreader
// (withUnread).
type streamBody struct {
	r      io.Reader
	closed atomic.Bool
}

func (s *streamBody) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *streamBody) Close() error               { s.closed.Store(true); return nil }

type unreadBody struct{ streamBody }

func (s *unreadBody) Unread(prefix []byte, err error) {
	rest := s.r
	if err != nil {
		rest = errReader{err}
	}
	s.r = io.MultiReader(bytes.NewReader(prefix), rest)
}

func contains(t testing.TB, body, want string) {
	t.Helper()
	if !strings.Contains(body, want) {
		t.Errorf("body lacks %q:\n%s", want, body)
	}
}

func lacks(t testing.TB, body, unwanted string) {
	t.Helper()
	if strings.Contains(body, unwanted) {
		t.Errorf("body has %q:\n%s", unwanted, body)
	}
}

func renderNode(w io.Writer, n *html.Node) error { return html.Render(w, n) }
