package front

import (
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/config"
)

// BenchmarkServe is one small GET through a Front to an in-memory worker
// and back, with the access log on: the front's own cost per request,
// without processes or sockets (BenchmarkFrontRoundTrip in package
// supervisor has those). go test -run - -bench Serve -benchmem ./supervisor/front/
func BenchmarkServe(b *testing.B) {
	h := newHarness(b, &fakeLane{name: config.DefaultLaneName, next: []*fakeSlot{{hc: worker(b)}}})
	h.accessLog = NewAccessLog("lanesd.access", false, discard{})
	h.snap.Access = h.accessLog
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI("http://front/small")
	b.ReportAllocs()
	for b.Loop() {
		if err := h.client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			b.Fatalf("GET /small: %v %d", err, resp.StatusCode())
		}
	}
}
