// Package dataplane is the worker side of the data plane: the fasthttp
// server a lane worker runs its handler on, set up as the front expects
// (streamed bodies within the front's limits, no header the handler did not
// set, held answers, 64 KB body writes). Package worker runs it; the
// built-in app's tests put handlers behind exactly this server. It is
// internal: a custom worker gets it through worker.Serve only.
package dataplane

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/logging"
)

// Limits are the request limits the front passes to its workers, so that a
// worker accepts whatever the front accepted and nothing more.
// A zero limit takes shared/config's default, repeated here because a
// custom worker must not link that package (and HCL with it).
type Limits struct {
	MaxHeaderSize int // bytes of request line and header
	MaxBodySize   int // bytes of request body
}

// NewServer returns the data-plane server worker.Serve runs handler on,
// configured as the front expects; Serve adds the control plane around it.
//
// Request bodies stream: a handler reads ctx.RequestBodyStream() as the
// bytes arrive (ctx.PostBody still works, reading the whole body into
// memory). A body announced larger than lim.MaxBodySize is refused with 413
// before the handler runs; a chunked one fails with fasthttp.ErrBodyTooLarge
// when it grows past it. fasthttp does neither by itself once bodies
// stream.
//
// The server adds no header the handler did not set: no Server, Date or
// default Content-Type, and header names keep their case.
func NewServer(handler fasthttp.RequestHandler, log hclog.Logger, lim Limits) *fasthttp.Server {
	if lim.MaxHeaderSize <= 0 {
		lim.MaxHeaderSize = 8 << 10
	}
	if lim.MaxBodySize <= 0 {
		lim.MaxBodySize = 16 << 20
	}
	return &fasthttp.Server{
		Handler:                       holdAnswer(limitBody(handler, lim.MaxBodySize)),
		Name:                          "",
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		StreamRequestBody:             true,
		ReadBufferSize:                lim.MaxHeaderSize + 1024,
		MaxRequestBodySize:            lim.MaxBodySize,
		// The front keeps persistent connections and never retries: the
		// worker must not close an idle one under it, so no idle timeout.
		IdleTimeout:     0,
		ReadTimeout:     0,
		Logger:          newDataLogger(log.Named("data")),
		CloseOnShutdown: true,
	}
}

// limitBody enforces max on request bodies, which fasthttp leaves to the
// handler once they stream.
func limitBody(h fasthttp.RequestHandler, max int) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		switch n := ctx.Request.Header.ContentLength(); {
		case n > max:
			// The body stays unread: the connection cannot carry another
			// request.
			ctx.SetConnectionClose()
			ctx.Error("413 Request Entity Too Large\n", fasthttp.StatusRequestEntityTooLarge)
			return
		case n == -1 && ctx.Request.IsBodyStream():
			// Chunked: nothing is prefetched for it, so swapping the stream
			// leaves no buffered bytes behind.
			ctx.Request.SetBodyStream(&maxBodyReader{r: ctx.Request.BodyStream(), left: int64(max)}, -1)
		}
		h(ctx)
	}
}

// maxBodyReader fails with fasthttp.ErrBodyTooLarge once more than left
// bytes have been read.
type maxBodyReader struct {
	r    io.Reader
	left int64
}

func (m *maxBodyReader) Read(p []byte) (int, error) {
	if m.left < 0 {
		return 0, fasthttp.ErrBodyTooLarge
	}
	if int64(len(p)) > m.left+1 {
		p = p[:m.left+1] // one byte more tells a body of exactly max from a longer one
	}
	n, err := m.r.Read(p)
	m.left -= int64(n)
	if m.left < 0 {
		return n + int(m.left), fasthttp.ErrBodyTooLarge
	}
	return n, err
}

// dataLogger is the data-plane server's fasthttp.Logger. fasthttp logs a
// request it cannot parse with a copy of its raw header, Authorization and
// Cookie included: the copy is cut off. What is left is escaped and
// rate-limited, since a bad client can provoke it on every connection.
type dataLogger struct{ lim *logging.Limiter }

var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

func newDataLogger(log hclog.Logger) dataLogger {
	return dataLogger{lim: logging.NewLimiter(log, time.Second)}
}

func (d dataLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if i := strings.Index(msg, ", contents: "); i >= 0 {
		msg = msg[:i]
	}
	// What fasthttp quotes (%q) in an error is a piece of the request,
	// such as the header line it could not parse.
	msg = quoted.ReplaceAllString(msg, `"..."`)
	level := hclog.Warn
	if strings.HasPrefix(format, "WARNING: Request.Body()") {
		// A custom handler reading a streamed body whole: bounded by
		// limitBody, and the handler's choice.
		level = hclog.Debug
	}
	d.lim.Log(level, format, "fasthttp: "+logging.Escape(msg, 500))
}
