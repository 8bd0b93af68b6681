// Package upstream is the client side of proxying to an app's upstream
// (app.upstream), shared by the two places that do it: the built-in
// worker's reverse proxy (the worker hop) and the front itself in direct
// mode (app.direct). It owns the upstream URL's parsing, the pooled
// connections (TCP or TLS, reused only when clean, 101 refused, a cut
// body told from a whole one), the headers a proxy must not pass on in a
// response, and what an upstream failure means for the client.
package upstream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Client settings.
const (
	// MaxIdle closes pooled connections before common upstream keep-alive
	// timeouts (5 s in Node.js, Apache, uvicorn) can close them under us.
	MaxIdle = 4 * time.Second
	// ReadBuffer also caps the size of an upstream response header.
	ReadBuffer = 32 << 10
)

// Target is a parsed upstream URL: scheme, host and port only.
type Target struct {
	Scheme string // "http" or "https"
	Host   string // host[:port] as configured: the URI host requests are parsed against
	Addr   string // host:port to dial
	Name   string // host name, for TLS
}

// TLS says the upstream speaks https.
func (t Target) TLS() bool { return t.Scheme == "https" }

// Parse checks an upstream URL ("http://host:port" or https).
func Parse(upstream string) (Target, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return Target{}, fmt.Errorf("upstream %q: %w", upstream, err)
	}
	var port string
	switch u.Scheme {
	case "http":
		port = "80"
	case "https":
		port = "443"
	default:
		return Target{}, fmt.Errorf("upstream %q: scheme must be http or https", upstream)
	}
	if u.Hostname() == "" {
		return Target{}, fmt.Errorf("upstream %q: no host", upstream)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return Target{}, fmt.Errorf("upstream %q: only scheme, host and port are allowed", upstream)
	}
	if p := u.Port(); p != "" {
		port = p
	}
	return Target{Scheme: u.Scheme, Host: u.Host, Addr: net.JoinHostPort(u.Hostname(), port), Name: u.Hostname()}, nil
}

// NewClient returns a client for t: one attempt per request (the caller
// decides retries: a hung upstream is never hit twice behind its back),
// streamed response bodies, header names and paths as given, no
// User-Agent of its own, and connections that carry a request only when
// clean (Dial).
func NewClient(t Target, maxConns int) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                          t.Addr,
		IsTLS:                         t.TLS(),
		DialTimeout:                   Dial(t.TLS(), &tls.Config{ServerName: t.Name, MinVersion: tls.VersionTLS12}),
		MaxIdemponentCallAttempts:     1,
		RetryIfErr:                    func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		StreamResponseBody:            true,
		MaxConns:                      maxConns,
		MaxIdleConnDuration:           MaxIdle,
		ReadBufferSize:                ReadBuffer,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
	}
}

// ErrSwitched is what an upstream connection returns instead of a "101
// Switching Protocols" answer: the connection then speaks another
// protocol and must never go back to the pool, nor the answer reach a
// client that did not ask to upgrade (lanes refuses upgrades).
var ErrSwitched = errors.New("upstream switched protocols")

// Classify maps an upstream error to the status the client gets and a
// short explanation. Anything that ran out of time is 504, including a
// dial (it is bounded by the same deadline); everything else is 502.
func Classify(err error) (int, string) {
	var te interface{ Timeout() bool }
	var de *fasthttp.ErrDialWithUpstream
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return fasthttp.StatusRequestEntityTooLarge, "request body too large"
	case errors.Is(err, ErrSwitched):
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
