package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/httpx"
	"github.com/lanes-dev/lanes/shared/logging"
	"github.com/lanes-dev/lanes/shared/upstream"
)

// Upstream client settings.
const (
	// upstreamMaxConns bounds connections to the upstream from one worker;
	// a worker runs few requests at once, so this is never the limit in
	// practice.
	upstreamMaxConns = 512
)

// proxy forwards requests to one upstream and streams the answers back.
type proxy struct {
	client  *fasthttp.HostClient
	scheme  string // "http" or "https"
	host    []byte // upstream host[:port] as configured
	timeout time.Duration
	log     hclog.Logger
	// limited logs per-request failures: an upstream outage under load
	// would otherwise write one line per request.
	limited *logging.Limiter
	// underscores forwards request header names containing "_".
	underscores bool
	scratch     sync.Pool // *scratch

	truncated atomic.Uint64 // responses cut off because the upstream's body failed
}

// scratch holds per-request working memory.
type scratch struct {
	uri    fasthttp.URI
	buf    []byte
	names  [][]byte
	tokens [][]byte
	xff    []byte
}

// Errors a request can fail with before it reaches the upstream.
var (
	errTarget     = errors.New("app: request target is not origin-form or absolute-form")
	errHeaderName = errors.New("app: header name is not a token")
	errUpgrade    = errors.New("app: protocol upgrade requested")
)

// clientBodyError is a failure reading the request body from the client
// (the front), as opposed to one talking to the upstream.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// clientBody tags read errors of the request body as the client's.
type clientBody struct{ r io.Reader }

func (b clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = &clientBodyError{err}
	}
	return n, err
}

func newProxy(upstreamURL string, timeout time.Duration, underscores bool, log hclog.Logger) (*proxy, error) {
	t, err := upstream.Parse(upstreamURL)
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	log = log.With("upstream", t.Addr)
	p := &proxy{
		client:      upstream.NewClient(t, upstreamMaxConns),
		scheme:      t.Scheme,
		host:        []byte(t.Host),
		timeout:     timeout,
		log:         log,
		limited:     logging.NewLimiter(log, time.Second),
		underscores: underscores,
	}
	p.scratch.New = func() any { return new(scratch) }
	return p, nil
}

// serve forwards ctx's request and hands the upstream's answer to ctx,
// body still streaming.
func (p *proxy) serve(ctx *fasthttp.RequestCtx) {
	s := p.scratch.Get().(*scratch) //nolint:forcetypeassert
	defer p.scratch.Put(s)

	req := fasthttp.AcquireRequest()
	if err := p.prepare(ctx, req, s); err != nil {
		fasthttp.ReleaseRequest(req)
		p.refuse(ctx, err)
		return
	}
	resp := fasthttp.AcquireResponse()
	// Keep the upstream's headers as they are: no Content-Type it did not send.
	resp.Header.SetNoDefaultContentType(true)
	// upstream_timeout bounds connecting, sending the request and waiting
	// for the response header; respond then makes it the bound between
	// two reads of the body, as nginx's proxy_read_timeout.
	err := p.client.DoDeadline(req, resp, time.Now().Add(p.timeout))
	// The request is fully written once DoDeadline returns; only the
	// response body may still be in flight.
	fasthttp.ReleaseRequest(req)
	if err == nil && resp.StatusCode() == fasthttp.StatusSwitchingProtocols {
		// The upstream connection refuses this answer (upstream.Conn); should
		// one ever get through, it is still not the client's.
		err = upstream.ErrSwitched
	}
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		p.fail(ctx, err)
		return
	}
	p.respond(ctx, resp, s)
}

// refuse answers a request that prepare would not forward.
func (p *proxy) refuse(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, errUpgrade):
		ctx.SetConnectionClose()
		ctx.Error("501 Not Implemented: WebSocket and other protocol upgrades are not supported by lanes\n",
			fasthttp.StatusNotImplemented)
	case errors.Is(err, errHeaderName):
		ctx.SetConnectionClose()
		ctx.Error("400 Bad Request: invalid header name\n", fasthttp.StatusBadRequest)
	default:
		p.limited.Log(hclog.Warn, "bad request target", "unparsable request target",
			"uri", logging.Escape(string(ctx.RequestURI()), 0), "error", err)
		ctx.Error("400 Bad Request: unparsable request target\n", fasthttp.StatusBadRequest)
	}
}

// prepare builds the upstream request from ctx's: same method, path and
// query, Host, headers and body, minus hop-by-hop headers, with one
// X-Forwarded-For and one X-Forwarded-Proto. It refuses (errUpgrade,
// errHeaderName, errTarget) what it cannot forward faithfully.
func (p *proxy) prepare(ctx *fasthttp.RequestCtx, req *fasthttp.Request, s *scratch) error {
	src := &ctx.Request.Header

	// The client writes the request target from the parsed URI. Parsing it
	// against the upstream's (valid) host rather than the client's Host keeps
	// an odd Host header from costing the path; the Host header itself is
	// sent as received (UseHostHeader). With path normalizing off the target
	// goes out as path + "?" + query, byte for byte.
	target, ok := originForm(src.RequestURI())
	if !ok {
		return errTarget
	}
	if err := s.uri.Parse(p.host, target); err != nil {
		return err
	}
	s.uri.SetScheme(p.scheme) // HostClient refuses a scheme other than its own
	s.uri.DisablePathNormalizing = true
	// fasthttp turns a URI's userinfo into an Authorization header when it
	// writes the request; a target never carries credentials upstream.
	s.uri.SetUsernameBytes(nil)
	s.uri.SetPasswordBytes(nil)

	// fasthttp has no way to list a request's headers without parsing its
	// cookies, so read the names from the serialized header instead.
	s.buf = src.AppendBytes(s.buf[:0])
	block := skipLine(s.buf)
	s.tokens = s.tokens[:0]
	upgrade := false
	for b := block; ; {
		k, v, rest, ok := nextHeader(b)
		if !ok {
			break
		}
		if !httpx.IsToken(k) {
			return errHeaderName
		}
		switch {
		case bytes.EqualFold(k, strConnection):
			s.tokens = httpx.AppendTokens(s.tokens, v)
		case bytes.EqualFold(k, strUpgrade):
			upgrade = upgrade || !isH2C(v)
		}
		b = rest
	}
	if upgrade {
		return errUpgrade
	}

	h := &req.Header
	// CopyTo keeps header order and the Cookie header unparsed (parsing it
	// would drop cookies whose values fasthttp considers invalid).
	src.CopyTo(h)
	h.SetProtocolBytes(strHTTP11) // this hop is ours, whatever the client spoke
	h.SetNoDefaultContentType(true)
	if len(h.Host()) == 0 { // HTTP/1.0 without Host
		h.SetHostBytes(p.host)
	}
	req.UseHostHeader = true
	req.SetURI(&s.uri)

	// Connection and the fields it names go first, so that a field it
	// names (X-Forwarded-For, say) is gone before anything reads it.
	s.names = s.names[:0]
	s.xff = s.xff[:0]
	var proto []byte
	for b := block; ; {
		k, v, rest, ok := nextHeader(b)
		if !ok {
			break
		}
		b = rest
		switch {
		case bytes.EqualFold(k, strHost):
			// Never dropped, even when Connection names it.
			continue
		case isHopByHop(k, s.tokens):
		case !p.underscores && bytes.IndexByte(k, '_') >= 0:
			// Dropped as nginx does: X_Forwarded_For and X-Forwarded-For
			// reach many frameworks as the same variable.
		case bytes.EqualFold(k, strForwardedFor):
			// Every copy, whatever its case, joined into one field.
			if len(v) > 0 {
				if len(s.xff) > 0 {
					s.xff = append(s.xff, ", "...)
				}
				s.xff = append(s.xff, v...)
			}
		case bytes.EqualFold(k, strForwardedProto):
			// The front sets this one after removing the client's: the
			// last copy is the front's.
			proto = v
		default:
			continue
		}
		s.names = append(s.names, k)
	}
	for _, k := range s.names {
		h.DelBytes(k)
	}
	h.ResetConnectionClose() // the upstream connection stays open for reuse
	if len(s.xff) > 0 {
		h.SetBytesKV(strForwardedFor, s.xff)
	}
	if len(proto) == 0 {
		proto = strForwardedHTTP
	}
	h.SetBytesKV(strForwardedProto, proto)

	if ctx.Request.IsBodyStream() {
		// Streamed as it arrives: a 50 MB upload never sits in memory.
		req.SetBodyStream(clientBody{ctx.Request.BodyStream()}, src.ContentLength())
	} else if body := ctx.Request.Body(); len(body) > 0 {
		req.SetBodyRaw(body) // valid until the handler returns; DoDeadline is done long before
	}
	return nil
}

// respond copies the upstream's status and end-to-end headers into ctx and
// hands it the body as a stream. It takes ownership of resp.
func (p *proxy) respond(ctx *fasthttp.RequestCtx, resp *fasthttp.Response, s *scratch) {
	dst := &ctx.Response.Header
	dst.DisableNormalizing()          // names as the upstream sent them
	dst.SetNoDefaultContentType(true) // no Content-Type the upstream did not send
	dst.SetStatusCode(resp.StatusCode())
	if msg := resp.Header.StatusMessage(); len(msg) > 0 {
		dst.SetStatusMessage(msg)
	}

	s.tokens = upstream.CopyHeader(dst, &resp.Header, s.tokens)

	n := resp.Header.ContentLength()
	switch {
	case !resp.IsBodyStream():
		// HEAD, 1xx, 204 and 304 carry no body. For HEAD, announce what the
		// upstream announced (SetContentLength ignores 204 and 304); -2
		// (no framing given) announces nothing.
		if n >= -1 {
			dst.SetContentLength(n)
		}
		fasthttp.ReleaseResponse(resp)
	case n == 0:
		_ = resp.CloseBodyStream() // fully read: the connection goes back to the pool
		fasthttp.ReleaseResponse(resp)
		dst.SetContentLength(0)
	default:
		b := &upstreamBody{p: p, resp: resp, r: resp.BodyStream(), framed: n != -2, conn: upstream.ConnOf(resp)}
		if b.conn != nil {
			// From here upstream_timeout bounds each wait for body bytes,
			// not the whole transfer: a slow but moving stream goes on (the
			// lane's request_timeout bounds the whole request).
			b.conn.SetIdleTimeout(p.timeout)
		}
		// -1 (chunked) and -2 (until the upstream closes) both reach the
		// client chunked. Set the stream after the headers: SetBodyStream
		// sets Content-Length, which AddBytesKV would otherwise overwrite.
		if n < 0 {
			n = -1
		}
		ctx.Response.SetBodyStream(b, n)
	}
}

// fail answers ctx for a request that got no upstream response.
func (p *proxy) fail(ctx *fasthttp.RequestCtx, err error) {
	status, what := classify(err)
	// One key per status: a dead upstream gives one line a second, not one
	// per request, and a different failure still shows at once.
	p.limited.Log(hclog.Warn, "upstream request failed "+what, "upstream request failed",
		"method", logging.Escape(string(ctx.Method()), 20), "uri", logging.Escape(string(ctx.RequestURI()), 0),
		"status", status, "error", err)
	if status == fasthttp.StatusRequestEntityTooLarge || status == fasthttp.StatusBadRequest {
		// The rest of the request body is still on the connection.
		ctx.SetConnectionClose()
	}
	ctx.Error(fmt.Sprintf("%d %s: %s\n", status, fasthttp.StatusMessage(status), what), status)
}

// classify maps an upstream error to the status the client gets and a
// short explanation (upstream.Classify); a failure reading the request
// body from the front is the client's: 400.
func classify(err error) (int, string) {
	var ce *clientBodyError
	if errors.As(err, &ce) && !errors.Is(err, fasthttp.ErrBodyTooLarge) {
		return fasthttp.StatusBadRequest, "request body incomplete"
	}
	return upstream.Classify(err)
}

// upstreamBody is the upstream response body as ctx.Response's body stream.
// Closing it closes the upstream stream, which returns the connection to the
// pool when the body was read to the end and closes it otherwise, and
// releases the upstream response.
//
// A body that fails ends the client's response with an error too: fasthttp's
// server then closes the connection without the terminating chunk, or short
// of the Content-Length, so the front sees a cut response as cut, not as
// complete.
type upstreamBody struct {
	p      *proxy
	resp   *fasthttp.Response
	r      io.Reader      // resp.BodyStream(); safe to call after close (io.ErrClosedPipe)
	conn   *upstream.Conn // the connection the body arrives on; nil if unknown
	framed bool           // chunked or Content-Length: the connection's end is not the body's
	n      int64
	failed error
	closed atomic.Bool
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err == io.EOF && b.framed && b.conn != nil && b.conn.Ended() {
		// fasthttp's chunked reader takes a connection closed between two
		// chunks for the end of the body, and its length-delimited one may
		// too: a framed body never needs the connection's end, so it was cut.
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF && !b.closed.Load() {
		b.failed = err
		b.p.truncated.Add(1)
		// The client gets a truncated response: past the header there is
		// no other way to tell it.
		b.p.limited.Warn("upstream body failed; response to the client cut off", "read", b.n, "error", err)
	}
	return n, err
}

// Close implements io.Closer.
func (b *upstreamBody) Close() error { return b.CloseWithError(nil) }

// CloseWithError implements fasthttp.ReadCloserWithError. fasthttp calls
// both Close and CloseWithError; the first call does the work.
func (b *upstreamBody) CloseWithError(err error) error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	if err == nil {
		err = b.failed
	}
	if err != nil {
		// The connection is not reused: its body was not read to a proper end.
		if c, ok := b.r.(fasthttp.ReadCloserWithError); ok {
			_ = c.CloseWithError(err)
		}
	}
	cerr := b.resp.CloseBodyStream()
	fasthttp.ReleaseResponse(b.resp)
	b.resp = nil
	return cerr
}

var (
	_ io.ReadCloser                = (*upstreamBody)(nil)
	_ fasthttp.ReadCloserWithError = (*upstreamBody)(nil)
)

// close releases idle upstream connections and reports the failures the
// log suppressed; later failures log without limit.
func (p *proxy) close() {
	p.client.CloseIdleConnections()
	p.limited.Flush()
}
