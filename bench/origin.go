package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/worker"
)

// The processes the bench runs from its own binary (main checks for their
// flags before parsing its own): the origin server every upstream-mode
// scenario proxies to, the bare proxy and the app-in-worker lane worker of
// the throughput and latency scenarios.

// originFlag makes this binary the origin server; main checks for it
// before parsing flags, so it stays out of -help.
const originFlag = "-origin"

// appWorkerFlag makes this binary a lanes worker that answers what the
// origin answers on "/"; lanesd runs it as a lane's command. main checks
// for it like originFlag.
const appWorkerFlag = "-app-worker"

// runAppWorker serves originBody as a lane worker; worker.Serve never
// returns.
func runAppWorker() {
	worker.Serve(func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBody(originBody)
	})
}

// bareProxyFlag makes this binary the bare proxy: a fasthttp server that
// forwards every request to the origin with a fasthttp client, and nothing
// else. It is the cost of one Go process hop, for reference.
const bareProxyFlag = "-bare-proxy"

// runBareProxy serves 127.0.0.1 on a port the kernel picks, forwarding to
// origin, until killed.
func runBareProxy(origin string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "bare proxy: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "bare proxy listening on %s\n", ln.Addr())
	hc := &fasthttp.HostClient{Addr: origin, MaxConns: 1024}
	err = fasthttp.Serve(ln, func(ctx *fasthttp.RequestCtx) {
		if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error("bad gateway\n", fasthttp.StatusBadGateway)
		}
	})
	fmt.Fprintf(os.Stderr, "bare proxy: %v\n", err)
	return 1
}

// originBody is the origin's answer: 100 bytes, a typical small API reply.
var originBody = []byte(strings.Repeat("x", 99) + "\n")

// runOrigin serves addr until killed: originBody on every path but the
// few below, which scenarios 8 to 10 use.
//
//	/big?mb=N   N MB (default 20), streamed: the slow readers' response
//	/sink       reads the request body to its end and drops it: uploads
//	/page       a 50 KB HTML page, themed by lanes when a theme is set
//	/plain      the same page, opted out of theming (X-Lanes-Theme: off)
func runOrigin(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "origin: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "origin listening on %s\n", ln.Addr())
	page := contentPage(50 << 10)
	s := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			switch string(ctx.Path()) {
			case "/big":
				mb := ctx.QueryArgs().GetUintOrZero("mb")
				if mb == 0 {
					mb = 20
				}
				ctx.SetContentType("application/octet-stream")
				ctx.SetBodyStream(&zeros{n: int64(mb) << 20}, mb<<20)
				return
			case "/sink":
				n, _ := io.Copy(io.Discard, ctx.RequestBodyStream())
				ctx.SetContentType("text/plain; charset=utf-8")
				fmt.Fprintf(ctx, "%d\n", n)
				return
			case "/page", "/plain":
				if string(ctx.Path()) == "/plain" {
					ctx.Response.Header.Set("X-Lanes-Theme", "off")
				}
				ctx.SetContentType("text/html; charset=utf-8")
				ctx.SetBody(page)
				return
			}
			ctx.SetContentType("text/plain; charset=utf-8")
			ctx.SetBody(originBody)
		},
		Name:                  "origin",
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		// /sink's bodies stream through the handler whatever their size.
		StreamRequestBody:  true,
		MaxRequestBodySize: 1 << 20,
	}
	if err := s.Serve(ln); err != nil {
		fmt.Fprintf(os.Stderr, "origin: %v\n", err)
		return 1
	}
	return 0
}

// zeros reads as n zero bytes.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := int(min(int64(len(p)), z.n))
	clear(p[:k])
	z.n -= int64(k)
	return k, nil
}
