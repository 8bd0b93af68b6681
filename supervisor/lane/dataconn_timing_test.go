package lane

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkDataPlane is one small request and its 100-byte answer over a
// worker's unix socket, through the front's data client (held writes) and
// through the same client on a plain connection.
func BenchmarkDataPlane(b *testing.B) {
	sock := filepath.Join(b.TempDir(), "w.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 100)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }}
	go srv.Serve(ln) //nolint:errcheck
	b.Cleanup(func() { srv.Shutdown() })

	run := func(hc *fasthttp.HostClient) func(*testing.B) {
		return func(b *testing.B) {
			req := fasthttp.AcquireRequest()
			req.SetRequestURI("http://worker/x")
			resp := fasthttp.AcquireResponse()
			b.ReportAllocs()
			for b.Loop() {
				if err := hc.DoDeadline(req, resp, time.Now().Add(time.Second)); err != nil {
					b.Fatal(err)
				}
				if len(resp.Body()) != 100 {
					b.Fatalf("body %d", len(resp.Body()))
				}
				resp.Reset()
			}
		}
	}
	b.Run("held", run(newDataClient(sock, 1)))
	plain := newDataClient(sock, 1)
	plain.Dial = func(string) (net.Conn, error) { return net.Dial("unix", sock) }
	b.Run("plain", run(plain))
}
