package app

import (
	"bytes"
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
	scratch sync.Pool // *scratch
}

// scratch holds per-request working memory.
type scratch struct {
	uri    fasthttp.URI
	buf    []byte
	names  [][]byte
	tokens [][]byte
}

func newProxy(upstream string, timeout time.Duration, log hclog.Logger) (*proxy, error) {
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
	p := &proxy{
		client: &fasthttp.HostClient{
			Addr:  addr,
			IsTLS: u.Scheme == "https",
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
		scheme:  u.Scheme,
		host:    []byte(u.Host),
		timeout: timeout,
		log:     log.With("upstream", addr),
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
		p.log.Warn("unparsable request target", "uri", string(ctx.RequestURI()), "error", err)
		ctx.Error("400 Bad Request: unparsable request target\n", fasthttp.StatusBadRequest)
		return
	}
	resp := fasthttp.AcquireResponse()
	// Keep the upstream's headers as they are: no Content-Type it did not send.
	resp.Header.SetNoDefaultContentType(true)
	err := p.client.DoDeadline(req, resp, time.Now().Add(p.timeout))
	// The request is fully written once DoDeadline returns; only the
	// response body may still be in flight.
	fasthttp.ReleaseRequest(req)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		p.fail(ctx, err)
		return
	}
	p.respond(ctx, resp, s)
}

// prepare builds the upstream request from ctx's: same method, request
// target, Host, headers and body, minus hop-by-hop headers, plus
// X-Forwarded-Proto when absent.
func (p *proxy) prepare(ctx *fasthttp.RequestCtx, req *fasthttp.Request, s *scratch) error {
	src := &ctx.Request.Header

	// The client writes the request target from the parsed URI. Parsing it
	// against the upstream's (valid) host rather than the client's Host keeps
	// an odd Host header from costing the path; the Host header itself is
	// sent as received (UseHostHeader). With path normalizing off the target
	// goes out as path + "?" + query, byte for byte.
	if err := s.uri.Parse(p.host, src.RequestURI()); err != nil {
		return err
	}
	s.uri.SetScheme(p.scheme) // HostClient refuses a scheme other than its own
	s.uri.DisablePathNormalizing = true

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

	// fasthttp has no way to list a request's headers without parsing its
	// cookies, so read the names from the serialized header instead.
	s.buf = h.AppendBytes(s.buf[:0])
	block := skipLine(s.buf)
	s.tokens = s.tokens[:0]
	for b := block; ; {
		k, v, rest, ok := nextHeader(b)
		if !ok {
			break
		}
		if bytes.EqualFold(k, strConnection) {
			s.tokens = appendTokens(s.tokens, v)
		}
		b = rest
	}
	s.names = s.names[:0]
	hasProto := false
	for b := block; ; {
		k, _, rest, ok := nextHeader(b)
		if !ok {
			break
		}
		switch {
		case bytes.EqualFold(k, strHost):
			// Never dropped, even when Connection names it.
		case isHopByHop(k, s.tokens):
			s.names = append(s.names, k)
		case bytes.EqualFold(k, strForwardedProto):
			hasProto = true
		}
		b = rest
	}
	for _, k := range s.names {
		h.DelBytes(k)
	}
	h.ResetConnectionClose() // the upstream connection stays open for reuse
	if !hasProto {
		h.SetBytesV(strForwardedHeader, strForwardedHTTP)
	}

	if ctx.Request.IsBodyStream() {
		req.SetBodyStream(ctx.Request.BodyStream(), src.ContentLength())
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
			s.tokens = appendTokens(s.tokens, v)
		}
	}
	for k, v := range resp.Header.All() {
		if bytes.EqualFold(k, strContentLength) || isHopByHop(k, s.tokens) {
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
		// -1 (chunked) and -2 (until the upstream closes) both reach the
		// client chunked. Set the stream after the headers: SetBodyStream
		// sets Content-Length, which AddBytesKV would otherwise overwrite.
		if n < 0 {
			n = -1
		}
		ctx.Response.SetBodyStream(&upstreamBody{resp: resp, r: resp.BodyStream(), log: p.log}, n)
	}
}

// fail answers ctx for a request that got no upstream response.
func (p *proxy) fail(ctx *fasthttp.RequestCtx, err error) {
	status, what := classify(err)
	p.log.Warn("upstream request failed",
		"method", string(ctx.Method()), "uri", string(ctx.RequestURI()),
		"status", status, "error", err)
	ctx.Error(fmt.Sprintf("%d %s: %s\n", status, fasthttp.StatusMessage(status), what), status)
}

// classify maps an upstream error to the status the client gets and a
// short explanation. Anything that ran out of time is 504, including a dial
// (it is bounded by the same deadline); everything else is 502.
func classify(err error) (int, string) {
	var te interface{ Timeout() bool }
	var de *fasthttp.ErrDialWithUpstream
	switch {
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
type upstreamBody struct {
	resp   *fasthttp.Response
	r      io.Reader // resp.BodyStream(); safe to call after close (io.ErrClosedPipe)
	log    hclog.Logger
	n      int64
	closed atomic.Bool
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF && !b.closed.Load() {
		// The client gets a truncated response: past the header there is
		// no other way to tell it.
		b.log.Warn("upstream body failed", "read", b.n, "error", err)
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
	if err != nil {
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
