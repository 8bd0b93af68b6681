package app

import (
	"bytes"
	"cmp"
	_ "embed"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/worker/theme"
)

// Demo limits.
const (
	maxDemoMillis = 600_000  // /demo/sleep and /demo/spin: 10 minutes
	maxDemoBytes  = 10 << 30 // /demo/bytes: 10 GiB
)

const (
	contentTypeText = "text/plain; charset=utf-8"
	contentTypeHTML = "text/html; charset=utf-8"
)

// demo is the built-in demo site: endpoints that misbehave on purpose, so
// that lanes' containment can be watched at work.
type demo struct {
	log  hclog.Logger
	done <-chan struct{} // closed by App.Close
	// themed: the app themes responses, so the theme page opts out.
	themed bool
	lane   string // the lane this worker serves (WithLane), for /demo/lane
}

// WithLane names the lane the worker serves; the demo site's /demo/lane
// answers it, so that a test can tell which lane ran a request from the
// worker's own answer.
func WithLane(name string) Option {
	return func(a *App) error {
		if a.demo != nil {
			a.demo.lane = name
		}
		return nil
	}
}

func (d *demo) serve(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/":
		d.index(ctx)
	case "/demo/sleep":
		d.sleep(ctx)
	case "/demo/hang":
		d.hang(ctx)
	case "/demo/spin":
		d.spin(ctx)
	case "/demo/crash":
		d.crash(ctx)
	case "/demo/bytes":
		d.byteStream(ctx)
	case "/demo/echo":
		d.echo(ctx)
	case "/demo/lane":
		d.whichLane(ctx)
	case "/demo/theme.html":
		d.themePage(ctx)
	default:
		// /demo/sleep/ANYTHING sleeps too, so that a config can give some
		// sleeps a lane of their own by path (the bench maps its slow class).
		if bytes.HasPrefix(ctx.Path(), []byte("/demo/sleep/")) {
			d.sleep(ctx)
			return
		}
		if bytes.HasPrefix(ctx.Path(), []byte("/demo/lane/")) {
			d.whichLane(ctx)
			return
		}
		ctx.Error("404 Not Found\n", fasthttp.StatusNotFound)
	}
}

const indexHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>lanes demo</title>
</head>
<body>
<main id="content">
<h1>lanes demo</h1>
<p>Each link below is served by a lanes worker process. Some misbehave on
purpose; watch the dashboard while you try them.</p>
<ul>
<li><a href="/demo/sleep?ms=200">/demo/sleep?ms=200</a> answers after 200 ms.</li>
<li><a href="/demo/sleep?ms=5000">/demo/sleep?ms=5000</a> answers after 5 s: a slow request.</li>
<li><a href="/demo/hang">/demo/hang</a> never answers, until the lane's request_timeout ends its worker.</li>
<li><a href="/demo/spin">/demo/spin</a> burns CPU and ignores cancellation; <a href="/demo/spin?ms=1000">/demo/spin?ms=1000</a> stops after 1 s.</li>
<li><a href="/demo/crash">/demo/crash</a> makes the worker exit; the supervisor replaces it.</li>
<li><a href="/demo/bytes?n=104857600">/demo/bytes?n=104857600</a> streams 100 MiB.</li>
<li><a href="/demo/echo">/demo/echo</a> shows the request as the worker got it.</li>
<li><a href="/demo/lane">/demo/lane</a> names the lane of the worker that answers.</li>
<li><a href="/demo/theme.html">/demo/theme.html</a> is the page configs/themed.hcl wraps this one in.</li>
</ul>
</main>
</body>
</html>
`

func (d *demo) index(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		ctx.Error("405 Method Not Allowed\n", fasthttp.StatusMethodNotAllowed)
		return
	}
	ctx.SetContentType(contentTypeHTML)
	ctx.SetBodyString(indexHTML)
}

// demoTheme is a theme page for the demo site (configs/themed.hcl): a
// 20 KB layout with a #content box, a <title>, a .placeholder to drop and
// head links and styles, like a real site's.
//
//go:embed demo_theme.html
var demoTheme string

// themePage serves demoTheme. In a themed app it opts out of theming
// (X-Lanes-Theme: off, which the filter removes): fetchd fetches it through
// lanes itself, and it must arrive as it is.
func (d *demo) themePage(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		ctx.Error("405 Method Not Allowed\n", fasthttp.StatusMethodNotAllowed)
		return
	}
	ctx.SetContentType(contentTypeHTML)
	if d.themed {
		ctx.Response.Header.Set(theme.HeaderOptOut, "off")
	}
	ctx.Response.Header.Set("Cache-Control", "max-age=60")
	ctx.SetBodyString(demoTheme)
}

// sleep answers after ?ms=N milliseconds (/demo/sleep and /demo/sleep/*).
func (d *demo) sleep(ctx *fasthttp.RequestCtx) {
	ms, ok := queryInt(ctx, "ms", maxDemoMillis)
	if !ok {
		ctx.Error("400 Bad Request: want ?ms=N, N a non-negative integer\n", fasthttp.StatusBadRequest)
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-d.done:
		shuttingDown(ctx)
		return
	}
	ctx.SetContentType(contentTypeText)
	ctx.SetBodyString("slept " + strconv.FormatInt(ms, 10) + " ms\n")
}

// whichLane answers "lane NAME" after ?ms=N (default 0): the lane of the
// worker that ran the request, as the worker knows it. /demo/lane/ANYTHING
// does the same, so that a config can map some to a lane by path.
func (d *demo) whichLane(ctx *fasthttp.RequestCtx) {
	ms := int64(0)
	if len(ctx.QueryArgs().Peek("ms")) > 0 {
		var ok bool
		if ms, ok = queryInt(ctx, "ms", maxDemoMillis); !ok {
			ctx.Error("400 Bad Request: want ?ms=N, N a non-negative integer\n", fasthttp.StatusBadRequest)
			return
		}
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-d.done:
		shuttingDown(ctx)
		return
	}
	ctx.SetContentType(contentTypeText)
	ctx.SetBodyString("lane " + d.lane + "\n")
}

// hang never answers: the supervisor's request timeout kills the process.
// Only App.Close (the worker going away anyway) releases it.
func (d *demo) hang(ctx *fasthttp.RequestCtx) {
	<-d.done
	shuttingDown(ctx)
}

// spin burns CPU in a loop that checks nothing, so neither a gone client
// nor a shutdown stops it: only killing the process does. With ?ms=N it
// stops after N ms and answers.
func (d *demo) spin(ctx *fasthttp.RequestCtx) {
	forever := len(ctx.QueryArgs().Peek("ms")) == 0
	var ms int64
	if !forever {
		var ok bool
		if ms, ok = queryInt(ctx, "ms", maxDemoMillis); !ok {
			ctx.Error("400 Bad Request: want ?ms=N, N a non-negative integer\n", fasthttp.StatusBadRequest)
			return
		}
	}
	x := burn(time.Now().Add(time.Duration(ms)*time.Millisecond), forever)
	ctx.SetContentType(contentTypeText)
	ctx.SetBodyString(fmt.Sprintf("spun %d ms (%x)\n", ms, x&0xff))
}

// burn computes until the deadline, or forever.
func burn(until time.Time, forever bool) uint64 {
	x := uint64(1)
	for i := 1; ; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		if i&0xffff == 0 && !forever && !time.Now().Before(until) {
			return x
		}
	}
}

// crash ends the worker process at once, without answering.
func (d *demo) crash(ctx *fasthttp.RequestCtx) {
	d.log.Error("demo crash requested: exiting with status 2", "remote", ctx.RemoteAddr().String())
	os.Exit(2)
}

// byteStream streams ?n=N bytes of a fixed pattern without holding them.
func (d *demo) byteStream(ctx *fasthttp.RequestCtx) {
	n, ok := queryInt(ctx, "n", maxDemoBytes)
	if !ok {
		ctx.Error("400 Bad Request: want ?n=N, N a non-negative integer\n", fasthttp.StatusBadRequest)
		return
	}
	ctx.SetContentType(contentTypeText)
	ctx.Response.SetBodyStream(&patternReader{n: n}, int(n))
}

// echo answers with the request as the worker received it.
func (d *demo) echo(ctx *fasthttp.RequestCtx) {
	type field struct{ k, v string }
	var fields []field
	h := &ctx.Request.Header
	// Serialized rather than All(): All would parse and re-join the cookies.
	h.SetNoDefaultContentType(true)
	for b := skipLine(h.AppendBytes(nil)); ; {
		k, v, rest, ok := nextHeader(b)
		if !ok {
			break
		}
		fields = append(fields, field{string(k), string(v)})
		b = rest
	}
	slices.SortStableFunc(fields, func(a, b field) int {
		return cmp.Compare(strings.ToLower(a.k), strings.ToLower(b.k))
	})

	body := ctx.Request.Body()
	var w bytes.Buffer
	fmt.Fprintf(&w, "method: %s\nuri: %s\nproto: %s\nheaders:\n", ctx.Method(), ctx.RequestURI(), h.Protocol())
	for _, f := range fields {
		fmt.Fprintf(&w, "  %s: %s\n", f.k, f.v)
	}
	fmt.Fprintf(&w, "body: %d bytes\n", len(body))
	w.Write(body)
	ctx.SetContentType(contentTypeText)
	ctx.SetBody(w.Bytes())
}

// queryInt parses the query argument name as an integer in [0, max],
// clamping larger values to max. ok is false when it is missing, not an
// integer, or negative.
func queryInt(ctx *fasthttp.RequestCtx, name string, limit int64) (v int64, ok bool) {
	s := ctx.QueryArgs().Peek(name)
	if len(s) == 0 {
		return 0, false
	}
	v, err := strconv.ParseInt(string(s), 10, 64)
	if err != nil {
		if ne, isNum := err.(*strconv.NumError); isNum && ne.Err == strconv.ErrRange && s[0] != '-' {
			return limit, true
		}
		return 0, false
	}
	if v < 0 {
		return 0, false
	}
	return min(v, limit), true
}

func shuttingDown(ctx *fasthttp.RequestCtx) {
	ctx.SetConnectionClose()
	ctx.Error("503 Service Unavailable: worker shutting down\n", fasthttp.StatusServiceUnavailable)
}

// bytesPattern repeats through /demo/bytes bodies: byte i is
// bytesPattern[i%64], so a reader can check any stretch of a body.
const bytesPattern = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+\n"

// patternBlock is bytesPattern repeated, so Read copies in large pieces.
var patternBlock = strings.Repeat(bytesPattern, 256)

// patternReader yields n bytes of bytesPattern.
type patternReader struct {
	off, n int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if left := r.n - r.off; int64(len(p)) > left {
		p = p[:left]
	}
	k := 0
	for k < len(p) {
		k += copy(p[k:], patternBlock[(r.off+int64(k))%int64(len(bytesPattern)):])
	}
	r.off += int64(k)
	return k, nil
}
