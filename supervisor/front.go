package supervisor

import (
	"errors"
	"fmt"
	"github.com/lanes-dev/lanes/shared/config"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/logging"
	"github.com/lanes-dev/lanes/supervisor/lane"
	"github.com/lanes-dev/lanes/supervisor/listener"
)

// newFront returns the client-facing server. Its limits keep one bad client
// from costing the others anything: ReadTimeout bounds reading a whole
// request (slowloris), ReadBufferSize caps the header (431), and serve
// enforces MaxBodySize on the streamed body (413) — before any 100
// Continue when the length is announced.
func (s *Supervisor) newFront() *fasthttp.Server {
	f := s.state.Load().cfg.Front // fixed while lanesd runs (fixedChanges)
	s.bufs = newFrontBuffers(f)
	return &fasthttp.Server{
		Handler:      s.serve,
		ErrorHandler: frontError,
		// An announced body over the limit is refused before any of it
		// is read. fasthttp reads the first 8 KB of a streamed body before
		// the handler, so such a request is made to look like one that
		// expects 100-continue: the ExpectHandler below then answers 413
		// without reading the body and closes the connection.
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			if h.ContentLength() > f.MaxBodySize && h.IsHTTP11() {
				h.Set(fasthttp.HeaderExpect, "100-continue")
			}
			return fasthttp.RequestConfig{}
		},
		ExpectHandler: func(ctx *fasthttp.RequestCtx) int {
			if ctx.Request.Header.ContentLength() > f.MaxBodySize {
				return fasthttp.StatusRequestEntityTooLarge
			}
			return fasthttp.StatusContinue
		},
		ReadTimeout:                   f.ReadTimeout,
		WriteTimeout:                  f.WriteTimeout,
		IdleTimeout:                   f.IdleTimeout,
		ReadBufferSize:                f.MaxHeaderSize,
		MaxRequestBodySize:            f.MaxBodySize,
		StreamRequestBody:             true,
		Concurrency:                   f.MaxConns,
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		CloseOnShutdown:               true,
		Logger:                        newFrontLogger(s.log.Named("front")),
	}
}

// frontBuffers are the front's pools, sized by its config.
type frontBuffers struct {
	body *sync.Pool // request bodies held in memory (client_body_buffer)
	resp *sync.Pool // responses held in memory (response_buffer)
	read *sync.Pool // the pump's read buffer
	fwd  sync.Pool  // *forward
}

func newFrontBuffers(f config.Front) *frontBuffers {
	b := &frontBuffers{
		body: bufPool(f.ClientBodyBuffer),
		resp: &sync.Pool{New: func() any { b := make([]byte, 0, f.ResponseBuffer); return &b }},
		read: bufPool(32 << 10),
	}
	b.fwd.New = func() any { return new(forward) }
	return b
}

// frontError answers a request fasthttp could not read.
func frontError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		ctx.Error("request header too large\n", fasthttp.StatusRequestHeaderFieldsTooLarge)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		ctx.Error("request body too large\n", fasthttp.StatusRequestEntityTooLarge)
	case errors.As(err, &ne) && ne.Timeout():
		ctx.Error("request timeout\n", fasthttp.StatusRequestTimeout)
	default:
		ctx.Error("bad request\n", fasthttp.StatusBadRequest)
	}
}

// refuseRequest answers a request the front will not forward, and closes
// the connection: what is left of the request on it cannot be trusted.
func refuseRequest(ctx *fasthttp.RequestCtx, r *refusal) {
	ctx.SetConnectionClose()
	ctx.Error(r.msg, r.status)
}

// serve checks and prepares a request (prepare), reads its body (readBody),
// classifies it into a lane, waits for a worker slot, and forwards it over
// the worker's unix socket. A small response is read whole; a larger one
// goes through a spool, which frees the worker as soon as it has sent
// everything. Whatever happens, the request leaves the lane through one
// call: Release (or Refuse, when it got no worker).
func (s *Supervisor) serve(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	req := &ctx.Request
	if req.Header.ConnectionClose() {
		ctx.SetConnectionClose()
	}
	fw := s.bufs.fwd.Get().(*forward)
	r := prepare(req, ctx.RemoteIP(), fw)
	s.bufs.fwd.Put(fw)
	if r != nil {
		refuseRequest(ctx, r)
		return
	}
	// HTTP/1.0 allows a request without Host; the client cannot write one
	// without it (errRequestHostRequired, a 502).
	if len(req.Header.Host()) == 0 {
		host := ctx.LocalAddr().String()
		req.URI().SetHost(host) // Write takes the Host from the parsed URI
		req.Header.SetHost(host)
	}
	var rb reqBody
	defer s.releaseBody(&rb)
	if r := s.readBody(req, &rb); r != nil {
		refuseRequest(ctx, r)
		return
	}

	st := s.state.Load()
	l, ref := st.match(ctx.Method(), ctx.Path())
	o := outcomes.Get().(*lane.Outcome) // it would escape: Release takes it
	*o = lane.Outcome{Method: ctx.Method(), Path: ctx.Path(), Mapping: ref}
	o.Client, _ = netip.AddrFromSlice(ctx.RemoteIP())
	o.Client = o.Client.Unmap()
	if st.access != nil {
		captureAccess(ctx, o, st.cfg.Log.AccessQuery)
	}
	defer outcomes.Put(o)
	direct := l.Direct()
	timeout := l.RequestTimeout()
	if direct {
		app := &st.cfg.App
		http10 := toUpstream(req, app.UnderscoresInHeaders, st.upstreamTLS)
		defer fromUpstreamDone(req, http10)
		if app.UpstreamTimeout > 0 {
			timeout = min(timeout, app.UpstreamTimeout)
		}
	}
	var held *lane.Worker // a slot that a panic must not leak
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("front handler panic", "method", logging.Quote(ctx.Method()), "path", logging.Quote(ctx.Path()), "panic", fmt.Sprint(r))
			ctx.Response.Reset()
			ctx.Error("internal error\n", fasthttp.StatusInternalServerError)
			if held != nil {
				o.Result, o.Err, o.Status = lane.Broken, fmt.Errorf("panic: %v", r), fasthttp.StatusInternalServerError
				l.Release(held, o)
			}
		}
	}()

	resp := fasthttp.AcquireResponse()
	var (
		w        *lane.Worker
		deadline time.Time
		small    bool
	)
	for attempt := 0; ; attempt++ {
		var err error
		acquired := time.Now()
		w, err = l.Acquire()
		queued := time.Now()
		o.Queue += queued.Sub(acquired)
		if attempt == 0 {
			o.Queue = queued.Sub(start)
		}
		if err != nil {
			fasthttp.ReleaseResponse(resp)
			o.Err, o.Total = err, time.Since(start)
			s.refuse(ctx, l, err)
			o.Status, o.Bytes = ctx.Response.StatusCode(), len(ctx.Response.Body())
			l.Refuse(o)
			return
		}
		if queued.Sub(acquired) > queuedCheck && listener.Gone(ctx.Conn()) {
			// Its client left while it waited: never dispatched (PHP-FPM
			// would run it for nobody); the slot goes to the next one.
			fasthttp.ReleaseResponse(resp)
			o.Result, o.Status, o.Total = lane.ClientGone, statusClientGone, time.Since(start)
			o.Err = errGoneWhileQueued
			ctx.SetConnectionClose()
			l.Release(w, o)
			return
		}
		held = w
		deadline = queued.Add(timeout)
		o.Started, o.Deadline = queued, deadline
		l.Begin(w, o)
		// Keep the worker's headers as they are: no Content-Type it did
		// not send.
		resp.Header.SetNoDefaultContentType(true)
		err = w.Client().DoDeadline(req, resp, deadline)
		sent := err == nil
		if sent {
			small, err = readSmallBody(ctx, resp)
		}
		ran := time.Now()
		o.Run += ran.Sub(queued)
		if err == nil {
			break
		}
		o.Err = err
		switch {
		case isTimeout(err):
			o.Result = lane.HardTimeout
		case undelivered(err) || lane.NotSent(resp):
			o.Result = lane.Undelivered
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
		o.Retry = attempt == 0 && !sent && o.Result != lane.HardTimeout && !lane.Responded(resp) &&
			(s.retryable(req.Header.Method()) || !reached(resp))
		if o.Retry {
			resp.Reset()
			l.Release(w, o)
			held = nil
			s.retries.Add(1)
			o.Retry, o.Err, o.Result = false, nil, lane.Answered
			rb.attach(req) // the body again, from its start
			continue
		}
		fasthttp.ReleaseResponse(resp)
		if o.Result == lane.HardTimeout {
			ctx.Error("request timeout\n", fasthttp.StatusGatewayTimeout)
		} else if direct {
			failDirect(ctx, err)
		} else {
			ctx.Error("worker failed\n", fasthttp.StatusBadGateway)
		}
		o.Total = time.Since(start)
		o.Status, o.Bytes = ctx.Response.StatusCode(), len(ctx.Response.Body())
		held = nil
		l.Release(w, o)
		return
	}
	if direct || w.Exec() {
		// A program we did not write (or the upstream itself): only its
		// end-to-end headers; its Connection: close (gunicorn's sync
		// workers send it on every answer) is about its own connection
		// and would make every client reconnect.
		fromUpstream(&ctx.Response.Header, resp)
	} else {
		if f := resp.Header.Peek(shared.HeaderFilterTime); len(f) > 0 {
			if us, err := strconv.ParseInt(string(f), 10, 64); err == nil && us > 0 {
				o.Filter = time.Duration(us) * time.Microsecond
				o.Run -= min(o.Filter, o.Run)
			}
			resp.Header.Del(shared.HeaderFilterTime)
		}
		resp.Header.CopyTo(&ctx.Response.Header)
	}
	o.Total = time.Since(start)
	if st.cfg.DebugHeaders {
		ctx.Response.Header.Set("X-Lane", l.Name())
		var buf [128]byte
		ctx.Response.Header.SetBytesV("Server-Timing", appendServerTiming(buf[:0], o))
	}
	body := resp.BodyStream()
	if small || body == nil { // whole body read, or none (HEAD, 204, 304)
		fasthttp.ReleaseResponse(resp)
		o.Status, o.Bytes = ctx.Response.StatusCode(), len(ctx.Response.Body())
		held = nil
		l.Release(w, o)
		return
	}
	sp := spoolPool.Get().(*spool)
	sp.s, sp.l, sp.w, sp.resp, sp.r, sp.start = s, l, w, resp, body, start
	sp.o = *o
	sp.deadline = deadline
	sp.o.Status = resp.StatusCode()
	sp.method = append(sp.method[:0], ctx.Method()...)
	sp.path = append(sp.path[:0], ctx.Path()...)
	sp.o.Method, sp.o.Path = sp.method, sp.path
	sp.access = keepAccess(sp.access, &sp.o)
	l.Handoff(o, &sp.o)
	sp.mem = s.bufs.resp.Get().(*[]byte)
	// The pump ends the request's account with the lane; the front server
	// writes the spool after serve returns and closes it when done.
	held = nil
	n := resp.Header.ContentLength()
	if direct && n < -1 {
		n = -1 // an upstream body that ends with its connection goes out chunked
	}
	ctx.Response.SetBodyStream(sp, n)
	go sp.pump()
}

// A request that waited in its lane's queue longer than queuedCheck has
// its client checked before it is dispatched; one whose client has gone is
// logged with nginx's 499 and never reaches a worker.
const (
	queuedCheck      = time.Millisecond
	statusClientGone = 499
)

var errGoneWhileQueued = errors.New("client closed the connection while the request was queued")

// outcomes holds the front's per-request lane.Outcome.
var outcomes = sync.Pool{New: func() any { return new(lane.Outcome) }}

// retryable says a request of this method may be sent again to another
// worker after its worker died without answering.
func (s *Supervisor) retryable(method []byte) bool {
	return s.state.Load().cfg.Front.RetryMethods.HasBytes(method)
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

// refuse answers a request the lane could not admit: 503 with Retry-After,
// the time the lane needs to drain its queue at its measured rate.
func (s *Supervisor) refuse(ctx *fasthttp.RequestCtx, l *lane.Lane, err error) {
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

// undelivered says a data-plane error happened before the worker could
// have read the request: dialing its socket, or writing to a socket whose
// peer is gone.
func undelivered(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && (oe.Op == "dial" || oe.Op == "write")
}

// appendServerTiming appends the Server-Timing header value (milliseconds).
func appendServerTiming(b []byte, o *lane.Outcome) []byte {
	add := func(b []byte, name string, d time.Duration, last bool) []byte {
		b = append(b, name...)
		b = append(b, ";dur="...)
		b = strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', 3, 64)
		if !last {
			b = append(b, ", "...)
		}
		return b
	}
	b = add(b, "queue", o.Queue, false)
	b = add(b, "filter", o.Filter, false)
	b = add(b, "run", o.Run, false)
	return add(b, "total", o.Total, true)
}

// errTruncated is a worker response body that ended before its end.
var errTruncated = fmt.Errorf("worker closed the connection before the end of the body: %w", io.ErrUnexpectedEOF)
