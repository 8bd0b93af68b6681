package front

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/supervisor/lane"
	"github.com/lanes-dev/lanes/supervisor/listener"
)

// dispatch waits for a slot in rq's lane and sends the request through it,
// with timeout as its hard timeout from the moment it has the slot. A
// request whose worker died before answering anything goes to another one
// once, when that is safe (see below). It returns the answer, its header
// read and, when small is true, its whole body already in rq's response,
// with rq still holding the slot for respond; or nil when the request
// ended here (refused, its client gone, its worker failed), answered and
// finished.
func (f *Front) dispatch(rq *request, timeout time.Duration) (resp *fasthttp.Response, small bool) {
	ctx, l, o := rq.ctx, rq.lane, &rq.rec
	req := &ctx.Request
	resp = fasthttp.AcquireResponse()
	for attempt := 0; ; attempt++ {
		acquired := time.Now()
		s, err := l.Acquire()
		queued := time.Now()
		o.Queue += queued.Sub(acquired)
		if attempt == 0 {
			o.Queue = queued.Sub(rq.start)
		}
		if err != nil {
			fasthttp.ReleaseResponse(resp)
			o.Err, o.Total = err, time.Since(rq.start)
			refuse(ctx, l, err)
			o.Status, o.Bytes = ctx.Response.StatusCode(), len(ctx.Response.Body())
			f.end(rq)
			return nil, false
		}
		rq.slot = s
		if queued.Sub(acquired) > queuedCheck && listener.Gone(ctx.Conn()) {
			// Its client left while it waited: never dispatched (PHP-FPM
			// would run it for nobody); the slot goes to the next one.
			fasthttp.ReleaseResponse(resp)
			o.Result, o.Status, o.Total = lane.ClientGone, statusClientGone, time.Since(rq.start)
			o.Err = errGoneWhileQueued
			ctx.SetConnectionClose()
			f.end(rq)
			return nil, false
		}
		deadline := queued.Add(timeout)
		o.Started, o.Deadline = queued, deadline
		s.Begin(&o.Outcome)
		err = s.Do(req, resp, deadline)
		sent := err == nil
		if sent {
			small, err = readSmallBody(ctx, resp)
		}
		o.Run += time.Since(queued)
		if err == nil {
			return resp, small
		}
		o.Err = err
		x := s.Exchange(resp)
		switch {
		case isTimeout(err):
			o.Result = lane.HardTimeout
		case undelivered(err) || x.NotSent:
			o.Result = lane.Undelivered
		case x.Stale:
			o.Result = lane.StaleConn
		default:
			o.Result = lane.Broken
		}
		// A worker that died before answering anything: the request may go
		// to another worker once, if its method is idempotent, or if not a
		// byte of it reached the worker's socket (a write that failed after
		// part of a body went out is no proof: the worker may already have
		// passed the request on, and the app would act twice). Never after
		// the hard timeout (a query of death kills at most two workers),
		// never once a response began.
		o.Retry = attempt == 0 && !sent && o.Result != lane.HardTimeout && !x.Responded &&
			(f.retryable(req.Header.Method()) || !x.Reached)
		if o.Retry {
			resp.Reset()
			f.end(rq)
			f.retries.Add(1)
			o.Retry, o.Err, o.Result = false, nil, lane.Answered
			rq.body.attach(req) // the body again, from its start
			continue
		}
		fasthttp.ReleaseResponse(resp)
		if o.Result == lane.HardTimeout {
			ctx.Error("request timeout\n", fasthttp.StatusGatewayTimeout)
		} else if rq.direct {
			failDirect(ctx, err)
		} else {
			ctx.Error("worker failed\n", fasthttp.StatusBadGateway)
		}
		o.Total = time.Since(rq.start)
		o.Status, o.Bytes = ctx.Response.StatusCode(), len(ctx.Response.Body())
		f.end(rq)
		return nil, false
	}
}

// A request that waited in its lane's queue longer than queuedCheck has
// its client checked before it is dispatched; one whose client has gone is
// logged with nginx's 499 and never reaches a worker.
const (
	queuedCheck      = time.Millisecond
	statusClientGone = 499
)

var errGoneWhileQueued = errors.New("client closed the connection while the request was queued")

// refuse answers a request the lane could not admit: 503 with Retry-After,
// the time the lane needs to drain its queue at its measured rate.
func refuse(ctx *fasthttp.RequestCtx, l Lane, err error) {
	msg := "lane " + l.Name() + ": queue full\n"
	if errors.Is(err, lane.ErrQueueTimeout) {
		msg = "lane " + l.Name() + ": queue timeout\n"
	} else if errors.Is(err, lane.ErrStopped) {
		msg = "shutting down\n"
	}
	ctx.Error(msg, fasthttp.StatusServiceUnavailable) // resets headers: set ours after
	var b [8]byte
	ctx.Response.Header.SetBytesV("Retry-After", strconv.AppendInt(b[:0], int64(l.RetryAfter()), 10))
}

// smallBody is the largest response the front reads whole from the worker
// rather than streaming it to the client. The worker's slot is free before
// the client has read a byte, a slow client costs no worker, and a worker
// that fails mid-body still gets the client a clean 502 or 504.
const smallBody = 32 << 10

var smallPool = sync.Pool{New: func() any { b := make([]byte, smallBody); return &b }}

// readSmallBody reads resp's body into ctx's response when its length is
// known and at most smallBody; it reports whether it did.
func readSmallBody(ctx *fasthttp.RequestCtx, resp *fasthttp.Response) (bool, error) {
	body := resp.BodyStream()
	n := resp.Header.ContentLength()
	if body == nil || n < 0 || n > smallBody {
		return false, nil
	}
	bp := smallPool.Get().(*[]byte)
	_, err := io.ReadFull(body, (*bp)[:n])
	if err == nil {
		ctx.Response.SetBody((*bp)[:n])
	}
	smallPool.Put(bp)
	closeStream(resp, body, err)
	return true, err
}

// closeStream closes a worker response's body stream; an error makes the
// client drop the connection instead of reusing it.
func closeStream(resp *fasthttp.Response, body io.Reader, err error) {
	if rc, ok := body.(fasthttp.ReadCloserWithError); ok {
		_ = rc.CloseWithError(err)
		return
	}
	_ = resp.CloseBodyStream()
}

// isTimeout says err is a hard-deadline timeout on the worker connection.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, fasthttp.ErrTimeout) || errors.As(err, &ne) && ne.Timeout()
}

// undelivered says a data-plane error happened before the worker could
// have read the request: dialing its socket, or writing to a socket whose
// peer is gone.
func undelivered(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && (oe.Op == "dial" || oe.Op == "write")
}
