package lane

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/upstream"
)

// The request path, as the front (package front) takes it: Acquire gives
// a request a Worker's slot, and the Worker's methods below are all the
// front does with it until Release. The worker's data client stays the
// lane's: the front asks Do to send a request, and Exchange what became
// of one that failed.

// Do sends req to the worker (a direct lane's: to the upstream) and reads
// the answer's header into resp, whose body streams (resp.BodyStream).
// deadline is the request's hard timeout: past it, Do or a read of the
// body fails with a timeout and the connection is closed. The answer's
// header is kept as it came: no Content-Type it did not send.
func (w *Worker) Do(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
	resp.Header.SetNoDefaultContentType(true)
	return w.hc.DoDeadline(req, resp, deadline)
}

// Exchange is what the data plane saw of the request behind resp, which
// Do sent: how far a request that failed got, and whether a body that
// ended in io.EOF was whole.
type Exchange struct {
	// NotSent: the request never fully reached the worker (the held
	// write of its last bytes failed): Undelivered.
	NotSent bool
	// Reached: a byte of the request was taken by the worker's (or the
	// upstream's) socket; it may have been passed on, so a request that
	// must not run twice cannot be sent again.
	Reached bool
	// Responded: bytes of an answer came; the request is not sent to
	// another worker.
	Responded bool
	// Stale: the worker closed a reused keep-alive connection as the
	// request went out, answering nothing (see stale): not the worker's
	// fault, and the request may be sent again as after Undelivered.
	Stale bool
	// Truncated: a chunked body that ended in io.EOF did so only because
	// the peer closed the connection before its end.
	Truncated bool
}

// Exchange reports on the request behind resp (see Exchange).
func (w *Worker) Exchange(resp *fasthttp.Response) Exchange {
	return Exchange{
		NotSent:   notSent(resp),
		Reached:   reached(resp) || upstream.Reached(resp),
		Responded: responded(resp),
		Stale:     stale(resp),
		Truncated: truncated(resp) || upstream.Truncated(resp),
	}
}

// Begin is l.Begin for w's lane.
func (w *Worker) Begin(o *Outcome) { w.lane.Begin(w, o) }

// Handoff is l.Handoff for w's lane.
func (w *Worker) Handoff(o, to *Outcome) { w.lane.Handoff(o, to) }

// Release is l.Release for w's lane: the slot goes back, and o is
// accounted for.
func (w *Worker) Release(o *Outcome) { w.lane.Release(w, o) }
