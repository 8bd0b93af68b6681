package app

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/config"
)

// BenchmarkProxySmall compares a small response fetched straight from the
// upstream with the same response through the app: as a worker server
// (client → app → upstream, all over loopback TCP) and as a bare handler
// call (what the app itself adds, upstream round trip included).
func BenchmarkProxySmall(b *testing.B) {
	up := serve(b, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.SetBodyString("hello, world\n")
	}, nil)
	a, err := New(config.App{Upstream: "http://" + up, UpstreamTimeout: 10 * time.Second}, hclog.NewNullLogger())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	viaApp := serve(b, a.Handler, nil)

	through := func(addr string) func(*testing.B) {
		return func(b *testing.B) {
			c := &fasthttp.HostClient{Addr: addr, MaxIdemponentCallAttempts: 1}
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			req.SetRequestURI("http://" + addr + "/small?q=1")
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Do(req, resp); err != nil {
					b.Fatal(err)
				}
				if resp.StatusCode() != 200 || len(resp.Body()) != 13 {
					b.Fatalf("got %d %q", resp.StatusCode(), resp.Body())
				}
			}
		}
	}
	b.Run("direct", through(up))
	b.Run("proxy", through(viaApp))

	b.Run("handler", func(b *testing.B) {
		var req fasthttp.Request
		req.SetRequestURI("http://example.test/small?q=1")
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
		bw := bufio.NewWriter(io.Discard)
		b.ReportAllocs()
		for b.Loop() {
			a.Handler(&ctx)
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("got %d", ctx.Response.StatusCode())
			}
			// Writing the response reads and closes the upstream body stream.
			if err := ctx.Response.Write(bw); err != nil {
				b.Fatal(err)
			}
			ctx.Response.Reset()
		}
	})
}
