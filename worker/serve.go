// Package worker is the worker side of lanes: Serve turns any Go program with
// a fasthttp handler into a lane worker. The supervisor starts the program
// through go-plugin, talks to it over the control plane (health, drain) and
// sends it requests over a unix socket (the data plane). Package app holds
// the built-in worker that lanesd itself runs.
//
// A custom worker links this package and shared, never shared/config: HCL
// stays out of it (TestNoHCLInCustomWorkers).
package worker

import (
	"context"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/logging"
)

// Serve runs handler as a lane worker and never returns. It must be called
// by a process that lanesd started (a lane's command); run by hand it prints
// why it cannot serve and exits 1. Nothing may be written to stdout before
// Serve: go-plugin uses it for the handshake.
func Serve(handler fasthttp.RequestHandler) {
	os.Exit(run(handler, nil))
}

// ServeLogger is Serve with a logger the caller built (it must write to
// stderr). The built-in worker uses it to share its logger with the app.
func ServeLogger(handler fasthttp.RequestHandler, log hclog.Logger) {
	os.Exit(run(handler, log))
}

// run serves handler; log nil means a logger at the environment's level.
func run(handler fasthttp.RequestHandler, log hclog.Logger) int {
	byHand := func() int {
		fmt.Fprintln(os.Stderr, "lanes worker: this program is a lanes worker; lanesd starts it from a lane's command")
		return 1
	}
	if os.Getenv(shared.Handshake.MagicCookieKey) != shared.Handshake.MagicCookieValue {
		return byHand()
	}
	env, err := shared.DecodeWorkerEnv(os.Getenv)
	if log == nil {
		log = logging.Worker(env.LogLevel)
	}
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	if env.Socket == "" {
		return byHand()
	}
	sock := env.Socket
	log = log.With("pid", os.Getpid()) // the supervisor adds the lane
	// go-plugin re-logs plain stderr lines at DEBUG only: route the standard
	// library's log package through hclog so a handler's log.Printf shows
	// at its level in the supervisor's log.
	stdlog.SetFlags(0)
	stdlog.SetOutput(log.Named("log").StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}))

	if !shared.WatchSupervisor(log, env.ParentPID) {
		return 3
	}
	// The supervisor stops its workers itself: drain, then shutdown. A
	// SIGTERM that reaches a worker too (systemd's default KillMode sends
	// it to every process of the service at once) must not cut its
	// requests short; the supervisor's stop, Pdeathsig and the parent
	// watch still end it.
	signal.Ignore(syscall.SIGTERM)

	_ = os.Remove(sock) // a stale socket of a killed predecessor
	ln, err := net.Listen("unix", sock)
	if err != nil {
		log.Error("listen on data socket", "socket", sock, "error", err)
		return 1
	}
	_ = os.Chmod(sock, 0o600)

	w := &server{log: log, handler: handler, idle: make(chan struct{}, 1)}
	srv := NewServer(w.serve, log, Limits{
		MaxHeaderSize: env.MaxHeaderSize,
		MaxBodySize:   env.MaxBodySize,
	})
	go func() {
		if err := srv.Serve(dataListener{ln}); err != nil {
			log.Error("data plane stopped", "error", err)
			os.Exit(1)
		}
	}()

	// plugin.Serve writes the handshake and blocks until the supervisor
	// kills the plugin; by then the data socket already accepts.
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: shared.Handshake,
		Plugins:         shared.PluginMap(w),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          log.Named("plugin"),
	})
	_ = os.Remove(sock)
	return 0
}

// Limits are the request limits the front passes to its workers, so that a
// worker accepts whatever the front accepted and nothing more.
// A zero limit takes shared/config's default, repeated here because a
// custom worker must not link that package (and HCL with it).
type Limits struct {
	MaxHeaderSize int // bytes of request line and header
	MaxBodySize   int // bytes of request body
}

// NewServer returns the data-plane server Serve runs handler on, configured
// as the front expects; Serve adds the control plane around it. Tests use it
// to put a handler behind exactly the server a worker runs.
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

// server is the worker's data-plane wrapper around the user handler and its
// Control implementation.
type server struct {
	log      hclog.Logger
	handler  fasthttp.RequestHandler
	inflight atomic.Int64
	served   atomic.Uint64
	draining atomic.Bool
	idle     chan struct{} // signalled when a request ends while draining
}

func (s *server) serve(ctx *fasthttp.RequestCtx) {
	s.inflight.Add(1)
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("handler panic", "method", logging.Escape(string(ctx.Method()), 0),
				"path", logging.Escape(string(ctx.Path()), 0), "panic", fmt.Sprint(r))
			ctx.Response.Reset()
			ctx.Error("internal server error\n", fasthttp.StatusInternalServerError)
		}
		s.served.Add(1)
		if s.inflight.Add(-1) == 0 && s.draining.Load() {
			select {
			case s.idle <- struct{}{}:
			default:
			}
		}
	}()
	s.handler(ctx)
}

// Health implements shared.Control.
func (s *server) Health(context.Context) (shared.WorkerStats, error) {
	return shared.WorkerStats{
		PID:        os.Getpid(),
		Inflight:   s.inflight.Load(),
		Served:     s.served.Load(),
		RSS:        shared.SelfRSS(),
		Goroutines: runtime.NumGoroutine(),
		Draining:   s.draining.Load(),
		Allocs:     heapAllocs(),
	}, nil
}

// heapAllocs returns how many heap objects this process has allocated,
// tiny ones included as in go_memstats_mallocs_total, from runtime/metrics,
// which unlike runtime.ReadMemStats does not stop the world. The count
// lags by what each P has not flushed yet: a few hundred objects.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/tiny/allocs:objects"}}
	metrics.Read(s)
	var n uint64
	for _, x := range s {
		if x.Value.Kind() == metrics.KindUint64 {
			n += x.Value.Uint64()
		}
	}
	return n
}

// Drain implements shared.Control: it waits until no request runs. The
// supervisor has already stopped sending new ones.
func (s *server) Drain(ctx context.Context) error {
	s.draining.Store(true)
	for s.inflight.Load() > 0 {
		select {
		case <-s.idle:
		case <-ctx.Done():
			return fmt.Errorf("drain: %d requests still running: %w", s.inflight.Load(), ctx.Err())
		}
	}
	return nil
}

var _ shared.Control = (*server)(nil)
