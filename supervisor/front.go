package supervisor

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/logging"
	"github.com/lanes-dev/lanes/supervisor/lane"
)

// newFront returns the client-facing server. Its limits keep one bad client
// from costing the others anything: ReadTimeout bounds reading a whole
// request (slowloris), ReadBufferSize caps the header (431), and
// MaxRequestBodySize the buffered body (413).
func (s *Supervisor) newFront() *fasthttp.Server {
	f := s.cfg.Front
	return &fasthttp.Server{
		Handler:                       s.serve,
		ErrorHandler:                  frontError,
		ReadTimeout:                   f.ReadTimeout,
		WriteTimeout:                  f.WriteTimeout,
		IdleTimeout:                   f.IdleTimeout,
		ReadBufferSize:                f.MaxHeaderSize,
		MaxRequestBodySize:            f.MaxBodySize,
		Concurrency:                   f.MaxConns,
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		CloseOnShutdown:               true,
		Logger:                        logging.Std(s.log.Named("front")),
	}
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

// serve classifies a request into a lane, waits for a worker slot, and
// forwards the request over the worker's unix socket. The response body is
// streamed back: the slot is held, and the hard timeout runs, until the
// last byte has come from the worker. Whatever happens, the request leaves
// the lane through one call: Release (or Refuse, when it got no worker).
func (s *Supervisor) serve(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	st := s.state.Load()
	li, ref := st.match(ctx.Method(), ctx.Path())
	l := st.lanes[li]
	o := lane.Outcome{Method: ctx.Method(), Path: ctx.Path(), Mapping: ref}
	var held *lane.Worker // a slot that a panic must not leak
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("front handler panic", "method", logging.Quote(ctx.Method()), "path", logging.Quote(ctx.Path()), "panic", fmt.Sprint(r))
			ctx.Response.Reset()
			ctx.Error("internal error\n", fasthttp.StatusInternalServerError)
			if held != nil {
				o.Result, o.Err, o.Status = lane.Broken, fmt.Errorf("panic: %v", r), fasthttp.StatusInternalServerError
				l.Release(held, &o)
			}
		}
	}()

	req := &ctx.Request
	// The client's Connection: close is for its connection, not ours to the
	// worker, which stays persistent.
	if req.Header.ConnectionClose() {
		req.Header.ResetConnectionClose()
		ctx.SetConnectionClose()
	}
	appendForwardedFor(req, ctx.RemoteIP())
	// HTTP/1.0 allows a request without Host; the client cannot write one
	// without it (errRequestHostRequired, a 502).
	if len(req.Header.Host()) == 0 {
		host := ctx.LocalAddr().String()
		req.URI().SetHost(host) // Write takes the Host from the parsed URI
		req.Header.SetHost(host)
	}

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
			l.Refuse(&o)
			return
		}
		held = w
		deadline = queued.Add(l.RequestTimeout())
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
		case undelivered(err):
			o.Result = lane.Undelivered
		default:
			o.Result = lane.Broken
		}
		// A worker that died before answering anything: the request may go
		// to another worker once, if the worker provably never got it or if
		// its method is idempotent. Never after the hard timeout (a query
		// of death kills at most two workers), never once a response began.
		o.Retry = attempt == 0 && !sent && o.Result != lane.HardTimeout &&
			(o.Result == lane.Undelivered || s.retryable(req.Header.Method()))
		if o.Retry {
			resp.Reset()
			l.Release(w, &o)
			held = nil
			s.retries.Add(1)
			o.Retry, o.Err, o.Result = false, nil, lane.Answered
			continue
		}
		fasthttp.ReleaseResponse(resp)
		if o.Result == lane.HardTimeout {
			ctx.Error("request timeout\n", fasthttp.StatusGatewayTimeout)
		} else {
			ctx.Error("worker failed\n", fasthttp.StatusBadGateway)
		}
		o.Total = time.Since(start)
		o.Status, o.Bytes = ctx.Response.StatusCode(), len(ctx.Response.Body())
		held = nil
		l.Release(w, &o)
		return
	}
	if f := resp.Header.Peek(shared.HeaderFilterTime); len(f) > 0 {
		if us, err := strconv.ParseInt(string(f), 10, 64); err == nil && us > 0 {
			o.Filter = time.Duration(us) * time.Microsecond
			o.Run -= min(o.Filter, o.Run)
		}
		resp.Header.Del(shared.HeaderFilterTime)
	}
	resp.Header.CopyTo(&ctx.Response.Header)
	o.Total = time.Since(start)
	if st.cfg.DebugHeaders {
		ctx.Response.Header.Set("X-Lane", l.Name())
		ctx.Response.Header.SetBytesV("Server-Timing", appendServerTiming(nil, &o))
	}
	body := resp.BodyStream()
	if small || body == nil { // whole body read, or none (HEAD, 204, 304)
		fasthttp.ReleaseResponse(resp)
		o.Status, o.Bytes = ctx.Response.StatusCode(), len(ctx.Response.Body())
		held = nil
		l.Release(w, &o)
		return
	}
	bs := acquireBody()
	bs.s, bs.l, bs.w, bs.resp, bs.r, bs.start = s, l, w, resp, body, start
	bs.o = o
	bs.deadline = deadline
	bs.o.Status = resp.StatusCode()
	bs.method = append(bs.method[:0], ctx.Method()...)
	bs.path = append(bs.path[:0], ctx.Path()...)
	bs.o.Method, bs.o.Path = bs.method, bs.path
	// The server writes this stream after serve returns and closes it when
	// done or when the client goes away; Close ends the request's account.
	held = nil
	ctx.Response.SetBodyStream(bs, resp.Header.ContentLength())
}

// retryable says a request of this method may be sent again to another
// worker after its worker died without answering.
func (s *Supervisor) retryable(method []byte) bool {
	switch string(method) {
	case fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodOptions:
		return true
	}
	return false
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

// refuse answers a request the lane could not admit: 503 with Retry-After.
func (s *Supervisor) refuse(ctx *fasthttp.RequestCtx, l *lane.Lane, err error) {
	msg := "lane " + l.Name() + ": queue full\n"
	if errors.Is(err, lane.ErrQueueTimeout) {
		msg = "lane " + l.Name() + ": queue timeout\n"
	} else if errors.Is(err, lane.ErrStopped) {
		msg = "shutting down\n"
	}
	ctx.Error(msg, fasthttp.StatusServiceUnavailable) // resets headers: set ours after
	ctx.Response.Header.Set("Retry-After", "1")
}

// undelivered says a data-plane error happened before the worker could
// have read the request: dialing its socket, or writing to a socket whose
// peer is gone.
func undelivered(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && (oe.Op == "dial" || oe.Op == "write")
}

// appendForwardedFor adds the client address to X-Forwarded-For.
func appendForwardedFor(req *fasthttp.Request, ip net.IP) {
	var buf [128]byte
	b := buf[:0]
	if prior := req.Header.Peek("X-Forwarded-For"); len(prior) > 0 {
		b = append(append(b, prior...), ", "...)
	}
	b, _ = ip.AppendText(b) // IPv4 dotted, IPv6 in RFC 5952 form
	req.Header.SetBytesV("X-Forwarded-For", b)
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

// bodyStream carries a worker's response body to the client and ends the
// request's account when the front server closes it.
type bodyStream struct {
	s      *Supervisor
	l      *lane.Lane
	w      *lane.Worker
	resp   *fasthttp.Response
	r      io.Reader
	start  time.Time
	o      lane.Outcome
	method []byte
	path   []byte
	rerr   error
	// deadline is the request's hard deadline, which fasthttp set on the
	// worker connection. late says the failed Read began after it: the
	// front was blocked writing to a slow client, not waiting on the worker.
	deadline time.Time
	late     bool
}

var bodyPool = sync.Pool{New: func() any { return new(bodyStream) }}

func acquireBody() *bodyStream { return bodyPool.Get().(*bodyStream) }

func (b *bodyStream) Read(p []byte) (int, error) {
	late := !time.Now().Before(b.deadline)
	n, err := b.r.Read(p)
	b.o.Bytes += n
	if err == io.EOF && lane.Truncated(b.resp) {
		// The worker closed between two chunks: fasthttp reads that as the
		// end. Failing the read closes the client's connection without the
		// terminating chunk, so the client cannot take the cut body as whole.
		err = errTruncated
	}
	if err != nil && err != io.EOF {
		b.rerr = err
		b.late = late
	}
	return n, err
}

// CloseWithError implements fasthttp.ReadCloserWithError; fasthttp calls it
// exactly once when the response is written or abandoned. bodyStream has no
// Close method on purpose: fasthttp calls both Close and CloseWithError on a
// stream that has both, and this one returns to a pool when closed.
func (b *bodyStream) CloseWithError(err error) error {
	closeStream(b.resp, b.r, err)
	fasthttp.ReleaseResponse(b.resp)
	b.o.Total = time.Since(b.start)
	b.o.Run = b.o.Total - b.o.Queue - b.o.Filter
	switch {
	case b.rerr == nil && err != nil:
		b.o.Result, b.o.Err = lane.ClientGone, err
	case b.rerr == nil:
	case isTimeout(b.rerr) && b.late:
		// The deadline passed while the client was slow to take the body:
		// the body is cut, but the worker did nothing wrong.
		b.o.Result, b.o.Err = lane.ClientGone, b.rerr
		b.s.log.Warn("client read the response past request_timeout; response cut",
			"lane", b.l.Name(), "method", logging.Quote(b.method), "path", logging.Quote(b.path), "bytes", b.o.Bytes)
	case isTimeout(b.rerr):
		// The worker stalled mid-body past the hard timeout: the client
		// already has its status line, so all that is left is the kill.
		b.o.Result, b.o.Err, b.o.Truncated = lane.HardTimeout, b.rerr, true
		b.s.truncated.Add(1)
	default:
		// The worker failed mid-body: the client's connection is closed
		// without the end of the body, and the request counts as failed.
		b.o.Result, b.o.Err, b.o.Truncated = lane.Broken, b.rerr, true
		b.s.truncated.Add(1)
		b.s.warn.Warn("response cut short: worker failed mid-body", "lane", b.l.Name(),
			"method", logging.Quote(b.method), "path", logging.Quote(b.path), "pid", b.w.PID(), "bytes", b.o.Bytes, "error", b.rerr)
	}
	b.l.Release(b.w, &b.o)
	*b = bodyStream{method: b.method[:0], path: b.path[:0]}
	bodyPool.Put(b)
	return nil
}

var _ fasthttp.ReadCloserWithError = (*bodyStream)(nil)
