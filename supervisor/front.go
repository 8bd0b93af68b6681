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
// last byte has come from the worker.
func (s *Supervisor) serve(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	var (
		l    *lane.Lane
		held *lane.Worker // a slot that a panic must not leak
	)
	defer func() {
		if r := recover(); r != nil {
			if held != nil {
				l.Release(held, time.Since(start))
			}
			s.log.Error("front handler panic", "method", string(ctx.Method()), "path", string(ctx.Path()), "panic", fmt.Sprint(r))
			ctx.Response.Reset()
			ctx.Error("internal error\n", fasthttp.StatusInternalServerError)
		}
	}()
	st := s.state.Load()
	l = st.lanes[st.routes.Match(ctx.Method(), ctx.Path())]

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

	var (
		w        *lane.Worker
		err      error
		queued   time.Time
		deadline time.Time
		resp     = fasthttp.AcquireResponse()
	)
	for attempt := 1; ; attempt++ {
		w, err = l.Acquire()
		queued = time.Now()
		if err != nil {
			fasthttp.ReleaseResponse(resp)
			s.refuse(ctx, l, err, timing{queue: queued.Sub(start), total: time.Since(start)})
			return
		}
		held = w
		deadline = queued.Add(l.RequestTimeout())
		err = w.Client().DoDeadline(req, resp, deadline)
		if err == nil || fasthttp.ErrTimeout == err || attempt > 1 || !undelivered(err) {
			break
		}
		// The worker never got the request: its socket refused the dial or
		// the write, so it is gone. That is the one case where another
		// worker may take any request; lanes retries nothing else.
		l.Failed(w, err)
		l.Abandon(w)
		held = nil
	}
	small := false
	if err == nil {
		small, err = readSmallBody(ctx, resp)
	}
	ran := time.Now()
	t := timing{queue: queued.Sub(start), run: ran.Sub(queued)}
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		if isTimeout(err) {
			l.Timeout(w, string(ctx.Method()), string(ctx.Path()), t.queue, t.run)
			ctx.Error("request timeout\n", fasthttp.StatusGatewayTimeout)
		} else {
			l.Failed(w, err)
			ctx.Error("worker failed\n", fasthttp.StatusBadGateway)
		}
		t.total = time.Since(start)
		held = nil
		l.Release(w, t.total)
		s.finish(ctx, l, w.PID(), t, len(ctx.Response.Body()))
		return
	}
	if f := resp.Header.Peek(shared.HeaderFilterTime); len(f) > 0 {
		if us, err := strconv.ParseInt(string(f), 10, 64); err == nil && us > 0 {
			t.filter = time.Duration(us) * time.Microsecond
			t.run -= min(t.filter, t.run)
		}
		resp.Header.Del(shared.HeaderFilterTime)
	}
	resp.Header.CopyTo(&ctx.Response.Header)
	t.total = ran.Sub(start)
	if s.cfg.DebugHeaders {
		ctx.Response.Header.Set("X-Lane", l.Name())
		ctx.Response.Header.SetBytesV("Server-Timing", t.appendServerTiming(nil))
	}
	body := resp.BodyStream()
	if small || body == nil { // whole body read, or none (HEAD, 204, 304)
		fasthttp.ReleaseResponse(resp)
		held = nil
		l.Release(w, t.total)
		s.finish(ctx, l, w.PID(), t, len(ctx.Response.Body()))
		return
	}
	bs := acquireBody()
	bs.s, bs.l, bs.w, bs.resp, bs.r, bs.start, bs.t = s, l, w, resp, body, start, t
	bs.deadline = deadline
	bs.status = resp.StatusCode()
	bs.method = append(bs.method[:0], ctx.Method()...)
	bs.path = append(bs.path[:0], ctx.Path()...)
	// The server writes this stream after serve returns and closes it when
	// done or when the client goes away; Close ends the request's account.
	held = nil
	ctx.Response.SetBodyStream(bs, resp.Header.ContentLength())
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
func (s *Supervisor) refuse(ctx *fasthttp.RequestCtx, l *lane.Lane, err error, t timing) {
	msg := "lane " + l.Name() + ": queue full\n"
	if errors.Is(err, lane.ErrQueueTimeout) {
		msg = "lane " + l.Name() + ": queue timeout\n"
	} else if errors.Is(err, lane.ErrStopped) {
		msg = "shutting down\n"
	}
	ctx.Error(msg, fasthttp.StatusServiceUnavailable) // resets headers: set ours after
	ctx.Response.Header.Set("Retry-After", "1")
	s.finish(ctx, l, 0, t, len(msg))
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

// timing is the partial times of one request.
type timing struct {
	queue, filter, run, total time.Duration
}

// appendServerTiming appends the Server-Timing header value (milliseconds).
func (t timing) appendServerTiming(b []byte) []byte {
	add := func(b []byte, name string, d time.Duration, last bool) []byte {
		b = append(b, name...)
		b = append(b, ";dur="...)
		b = strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', 3, 64)
		if !last {
			b = append(b, ", "...)
		}
		return b
	}
	b = add(b, "queue", t.queue, false)
	b = add(b, "filter", t.filter, false)
	b = add(b, "run", t.run, false)
	return add(b, "total", t.total, true)
}

// finish writes the access log line of a request answered in serve.
func (s *Supervisor) finish(ctx *fasthttp.RequestCtx, l *lane.Lane, pid int, t timing, n int) {
	s.logAccess(l, ctx.Method(), ctx.Path(), ctx.Response.StatusCode(), n, pid, t)
}

// logAccess writes one access log line; a streamed response writes its own
// from bodyStream, after serve has returned and ctx is gone.
func (s *Supervisor) logAccess(l *lane.Lane, method, path []byte, status, n, pid int, t timing) {
	if s.access == nil {
		return
	}
	s.access.Info("request", "lane", l.Name(), "method", string(method), "path", string(path),
		"status", status, "bytes", n, "pid", pid,
		"queue", t.queue, "filter", t.filter, "run", t.run, "total", t.total)
}

// bodyStream carries a worker's response body to the client and ends the
// request's account when the front server closes it.
type bodyStream struct {
	s      *Supervisor
	l      *lane.Lane
	w      *lane.Worker
	resp   *fasthttp.Response
	r      io.Reader
	start  time.Time
	t      timing
	status int
	n      int
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
	b.n += n
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
	b.t.total = time.Since(b.start)
	switch {
	case !isTimeout(b.rerr):
	case b.late:
		// The deadline passed while the client was slow to take the body:
		// the body is cut, but the worker did nothing wrong.
		b.s.log.Warn("client read the response past request_timeout; response cut",
			"lane", b.l.Name(), "method", string(b.method), "path", string(b.path), "bytes", b.n)
	default:
		// The worker stalled mid-body past the hard timeout: the client
		// already has its status line, so all that is left is the kill.
		b.l.Timeout(b.w, string(b.method), string(b.path), b.t.queue, b.t.total-b.t.queue)
	}
	b.l.Release(b.w, b.t.total)
	b.s.logAccess(b.l, b.method, b.path, b.status, b.n, b.w.PID(), b.t)
	*b = bodyStream{method: b.method[:0], path: b.path[:0]}
	bodyPool.Put(b)
	return nil
}

var _ fasthttp.ReadCloserWithError = (*bodyStream)(nil)
