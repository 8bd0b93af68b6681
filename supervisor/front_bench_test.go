package supervisor

import (
	"io"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"
)

// BenchmarkFrontRoundTrip is one small GET through the front to a real
// worker process (hello-worker) and back, on one keep-alive connection.
// Its allocations are the front's and the client's: the worker is another
// process. go test -run - -bench FrontRoundTrip -benchmem ./supervisor/
func BenchmarkFrontRoundTrip(b *testing.B) {
	s := startLogging(b, `
lane "default" {
  min_workers = 1
  max_workers = 1
  command     = [CMD]
}
`, hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: io.Discard}))
	c := &fasthttp.HostClient{Addr: s.FrontAddr().String(), MaxConns: 1}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI("http://" + s.FrontAddr().String() + "/hello")
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			b.Fatalf("GET /hello: %v %d", err, resp.StatusCode())
		}
	}
}
