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

// The front allocates nothing of its own for a small answer, the access
// log on (the data-plane client's streamed body is the worker's: this
// worker answers unstreamed). make test runs it without -race.
func TestServeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool allocates under -race; make test runs this test without it")
	}
	hc := worker(t)
	hc.StreamResponseBody = false
	h := newHarness(t, &fakeLane{name: config.DefaultLaneName, next: []*fakeSlot{{hc: hc}}})
	h.accessLog = NewAccessLog("lanesd.access", false, discard{})
	h.snap.Access = h.accessLog
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI("http://front/small")
	get := func() {
		if err := h.client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("GET /small: %v %d", err, resp.StatusCode())
		}
	}
	get()
	if n := testing.AllocsPerRun(500, get); n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
}
