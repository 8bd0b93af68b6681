package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/cleanconn"
	"github.com/lanes-dev/lanes/shared/httpx"
	"github.com/lanes-dev/lanes/shared/logging"
)

// Upstream client settings.
const (
	// upstreamMaxConns bounds connections to the upstream from one worker;
	// a worker runs few requests at once, so this is never the limit in
	// practice.
	upstreamMaxConns = 512
	// upstreamMaxIdle closes pooled connections before common upstream
	// keep-alive timeouts (5 s in Node.js, Apache, uvicorn) can close them
	// under us: requests are never retried, so a request sent on a
	// connection the upstream has just closed would fail with 502.
	upstreamMaxIdle = 4 * time.Second
	// upstreamReadBuffer also caps the size of an upstream response header.
	upstreamReadBuffer = 32 << 10
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
	// errSwitched is what the upstream connection returns instead of a
	// "101 Switching Protocols" answer: the connection then speaks another
	// protocol and must never go back to the pool.
	errSwitched = errors.New("app: upstream switched protocols")
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

func newProxy(upstream string, timeout time.Duration, underscores bool, log hclog.Logger) (*proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("app: upstream %q: %w", upstream, err)
	}
	var port string
	switch u.Scheme {
	case "http":
		port = "80"
	case "https":
		port = "443"
	default:
		return nil, fmt.Errorf("app: upstream %q: scheme must be http or https", upstream)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("app: upstream %q: no host", upstream)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("app: upstream %q: only scheme, host and port are allowed", upstream)
	}
	if p := u.Port(); p != "" {
		port = p
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	log = log.With("upstream", addr)
	p := &proxy{
		client: &fasthttp.HostClient{
			Addr:        addr,
			IsTLS:       u.Scheme == "https",
			DialTimeout: dialUpstream(u.Scheme == "https", &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}),
			// One attempt: a hung or failing upstream is never hit twice.
			MaxIdemponentCallAttempts:     1,
			StreamResponseBody:            true,
			MaxConns:                      upstreamMaxConns,
			MaxIdleConnDuration:           upstreamMaxIdle,
			ReadBufferSize:                upstreamReadBuffer,
			NoDefaultUserAgentHeader:      true,
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
		},
		scheme:      u.Scheme,
		host:        []byte(u.Host),
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
		// The upstream connection refuses this answer (upstreamConn); should
		// one ever get through, it is still not the client's.
		err = errSwitched
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

	// Header by header rather than CopyTo: CopyTo would also bring the
	// upstream's framing (Content-Length, Connection: close, HTTP/1.0),
	// which belongs to the other connection.
	s.tokens = s.tokens[:0]
	for k, v := range resp.Header.All() {
		if bytes.EqualFold(k, strConnection) {
			s.tokens = httpx.AppendTokens(s.tokens, v)
		}
	}
	for k, v := range resp.Header.All() {
		if bytes.EqualFold(k, strContentLength) || isHopByHop(k, s.tokens) || isInternal(k) {
			continue
		}
		dst.AddBytesKV(k, v)
	}

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
		b := &upstreamBody{p: p, resp: resp, r: resp.BodyStream(), framed: n != -2}
		if a, ok := resp.LocalAddr().(*upstreamAddr); ok {
			b.conn = a.c
			// From here upstream_timeout bounds each wait for body bytes,
			// not the whole transfer: a slow but moving stream goes on (the
			// lane's request_timeout bounds the whole request).
			b.conn.idle.Store(int64(p.timeout))
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
// short explanation. Anything that ran out of time is 504, including a dial
// (it is bounded by the same deadline); everything else is 502.
func classify(err error) (int, string) {
	var te interface{ Timeout() bool }
	var de *fasthttp.ErrDialWithUpstream
	var ce *clientBodyError
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return fasthttp.StatusRequestEntityTooLarge, "request body too large"
	case errors.As(err, &ce):
		return fasthttp.StatusBadRequest, "request body incomplete"
	case errors.Is(err, errSwitched):
		return fasthttp.StatusBadGateway, "upstream switched protocols"
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.As(err, &te) && te.Timeout():
		return fasthttp.StatusGatewayTimeout, "upstream did not answer in time"
	case errors.Is(err, syscall.ECONNREFUSED):
		return fasthttp.StatusBadGateway, "upstream refused the connection"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return fasthttp.StatusBadGateway, "upstream closed the connection"
	case errors.As(err, &de):
		return fasthttp.StatusBadGateway, "cannot connect to upstream"
	default:
		return fasthttp.StatusBadGateway, "upstream request failed"
	}
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
	r      io.Reader     // resp.BodyStream(); safe to call after close (io.ErrClosedPipe)
	conn   *upstreamConn // the connection the body arrives on; nil if unknown
	framed bool          // chunked or Content-Length: the connection's end is not the body's
	n      int64
	failed error
	closed atomic.Bool
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err == io.EOF && b.framed && b.conn != nil && b.conn.ended.Load() {
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

// dialUpstream returns the HostClient's dial function: a TCP connection
// (TLS on top for https) wrapped in an upstreamConn. fasthttp takes a
// connection with a Handshake method for TLS already done.
func dialUpstream(isTLS bool, tlsConfig *tls.Config) fasthttp.DialFuncWithTimeout {
	dial := func(addr string, timeout time.Duration) (raw, conn net.Conn, err error) {
		if timeout > 0 {
			raw, err = fasthttp.DialTimeout(addr, timeout)
		} else {
			raw, err = fasthttp.Dial(addr)
		}
		if err != nil || !isTLS {
			return raw, raw, err
		}
		tc := tls.Client(raw, tlsConfig)
		hctx, cancel := context.Background(), context.CancelFunc(func() {})
		if timeout > 0 {
			hctx, cancel = context.WithTimeout(hctx, timeout)
		}
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, nil, err
		}
		return raw, tc, nil
	}
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		c := &upstreamConn{addr: addr, dial: dial}
		c.laddr = &upstreamAddr{c: c}
		if err := c.connect(timeout); err != nil {
			return nil, err
		}
		return c, nil
	}
}

// upstreamAddr is an upstream connection's local address, carrying the
// connection itself: fasthttp hands a response its connection's addresses
// (Response.LocalAddr) and nothing else of it.
type upstreamAddr struct {
	net.Addr
	c *upstreamConn
}

// upstreamConn is a connection to the upstream that watches what fasthttp's
// client cannot be told:
//
//   - whether the connection has ended (a Read failed or hit EOF), which
//     tells a body cut at a chunk boundary from one that ended properly;
//   - whether a response is "101 Switching Protocols": fasthttp would put
//     that connection, now speaking another protocol, back in the pool,
//     where it fails the next request. The Read that brings it fails
//     instead, so fasthttp closes the connection;
//   - whether the connection is clean when fasthttp takes it from its pool
//     for a new request (package cleanconn): bytes past the last answer, or
//     arriving while idle, are not the new request's answer. The first
//     Write of the request then goes to a fresh connection instead, so the
//     request gets its own answer and the dirty connection is closed.
//
// Reads and Writes come from one request at a time (fasthttp's client does
// not pipeline), so the tracking state needs no lock.
type upstreamConn struct {
	net.Conn // TCP, or TLS over it
	laddr    *upstreamAddr
	ended    atomic.Bool
	// idle, when not 0, is the read timeout renewed before every Read
	// (nanoseconds): set while a response body streams, cleared when the
	// next request is written and fasthttp's deadline holds again.
	idle atomic.Int64
	t    cleanconn.Tracker

	addr string
	dial func(addr string, timeout time.Duration) (raw, conn net.Conn, err error)
	wdl  time.Time // the write deadline fasthttp set; a replacement gets it too
}

// connect dials the upstream and makes c that connection.
func (c *upstreamConn) connect(timeout time.Duration) error {
	raw, conn, err := c.dial(c.addr, timeout)
	if err != nil {
		return err
	}
	var rc syscall.RawConn
	if sc, ok := raw.(syscall.Conn); ok {
		rc, _ = sc.SyscallConn()
	}
	c.Conn = conn
	c.laddr.Addr = raw.LocalAddr()
	c.ended.Store(false)
	c.t.Attach(rc)
	return nil
}

func (c *upstreamConn) LocalAddr() net.Addr { return c.laddr }

// Handshake tells fasthttp not to wrap the connection in TLS again.
func (c *upstreamConn) Handshake() error {
	if tc, ok := c.Conn.(*tls.Conn); ok {
		return tc.Handshake()
	}
	return nil
}

func (c *upstreamConn) SetDeadline(t time.Time) error {
	c.wdl = t
	return c.Conn.SetDeadline(t)
}

func (c *upstreamConn) SetWriteDeadline(t time.Time) error {
	c.wdl = t
	return c.Conn.SetWriteDeadline(t)
}

func (c *upstreamConn) Write(p []byte) (int, error) {
	c.idle.Store(0)
	if !c.t.Write(p) {
		// Nothing of this request is on the dirty connection yet: it goes
		// out whole on a fresh one, within the request's deadline.
		_ = c.Conn.Close()
		var timeout time.Duration
		if !c.wdl.IsZero() {
			if timeout = time.Until(c.wdl); timeout <= 0 {
				return 0, fasthttp.ErrDialTimeout
			}
		}
		if err := c.connect(timeout); err != nil {
			return 0, fmt.Errorf("replace a dirty upstream connection: %w", err)
		}
		if !c.wdl.IsZero() {
			if err := c.Conn.SetWriteDeadline(c.wdl); err != nil {
				return 0, err
			}
		}
		c.t.Write(p)
	}
	return c.Conn.Write(p)
}

func (c *upstreamConn) Read(p []byte) (int, error) {
	if d := c.idle.Load(); d > 0 {
		if err := c.Conn.SetReadDeadline(time.Now().Add(time.Duration(d))); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	if err != nil {
		c.ended.Store(true)
	}
	if n > 0 {
		c.t.Read(p[:n])
		if c.t.Switched() {
			c.ended.Store(true)
			_ = c.Conn.Close()
			return 0, errSwitched
		}
	}
	return n, err
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
