// Package worker is the worker side of lanes: Serve turns any Go program with
// a fasthttp handler into a lane worker. The supervisor starts the program
// through go-plugin, talks to it over the control plane (health, drain) and
// sends it requests over a unix socket (the data plane). Package app holds
// the built-in worker that lanesd itself runs.
package worker

import (
	"context"
	"fmt"
	stdlog "log"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/logging"
)

// parentPoll is how often a worker checks that its supervisor still lives.
// Pdeathsig is the first layer; this catches the rest (a supervisor whose
// forking thread is gone, or a worker started by something else).
const parentPoll = 200 * time.Millisecond

// Serve runs handler as a lane worker and never returns. It must be called
// by a process that lanesd started (a lane's command); run by hand it prints
// why it cannot serve and exits 1. Nothing may be written to stdout before
// Serve: go-plugin uses it for the handshake.
func Serve(handler fasthttp.RequestHandler) {
	os.Exit(run(handler, logging.Worker(os.Getenv(shared.EnvLogLevel))))
}

// ServeLogger is Serve with a logger the caller built (it must write to
// stderr). The built-in worker uses it to share its logger with the app.
func ServeLogger(handler fasthttp.RequestHandler, log hclog.Logger) {
	os.Exit(run(handler, log))
}

func run(handler fasthttp.RequestHandler, log hclog.Logger) int {
	sock := os.Getenv(shared.EnvSocket)
	if sock == "" || os.Getenv(shared.Handshake.MagicCookieKey) != shared.Handshake.MagicCookieValue {
		fmt.Fprintln(os.Stderr, "lanes worker: this program is a lanes worker; lanesd starts it from a lane's command")
		return 1
	}
	log = log.With("pid", os.Getpid()) // the supervisor adds the lane
	// go-plugin re-logs plain stderr lines at DEBUG only: route the standard
	// library's log package through hclog so a handler's log.Printf shows
	// at its level in the supervisor's log.
	stdlog.SetFlags(0)
	stdlog.SetOutput(log.Named("log").StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}))

	if sup, err := strconv.Atoi(os.Getenv(shared.EnvParentPID)); err == nil {
		// Watch the parent this process started under, which is not the
		// supervisor when a wrapper (sh -c, go run) forks the worker.
		ppid := os.Getppid()
		if ppid == 1 && sup != 1 {
			log.Warn("supervisor is gone; exiting", "was", sup)
			return 3
		}
		go watchParent(ppid, log)
	}

	_ = os.Remove(sock) // a stale socket of a killed predecessor
	ln, err := net.Listen("unix", sock)
	if err != nil {
		log.Error("listen on data socket", "socket", sock, "error", err)
		return 1
	}
	_ = os.Chmod(sock, 0o600)

	w := &server{log: log, handler: handler, idle: make(chan struct{}, 1)}
	srv := &fasthttp.Server{
		Handler:                       w.serve,
		Name:                          "",
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		ReadBufferSize:                envInt(shared.EnvMaxHeaderSize, 8<<10) + 1024,
		MaxRequestBodySize:            envInt(shared.EnvMaxBodySize, 16<<20),
		// The front keeps persistent connections and never retries: the
		// worker must not close an idle one under it, so no idle timeout.
		IdleTimeout:     0,
		ReadTimeout:     0,
		Logger:          logging.Std(log.Named("data")),
		CloseOnShutdown: true,
	}
	go func() {
		if err := srv.Serve(ln); err != nil {
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
			s.log.Error("handler panic", "method", string(ctx.Method()), "path", string(ctx.Path()), "panic", fmt.Sprint(r))
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
		RSS:        selfRSS(),
		Goroutines: runtime.NumGoroutine(),
		Draining:   s.draining.Load(),
	}, nil
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

func watchParent(ppid int, log hclog.Logger) {
	t := time.NewTicker(parentPoll)
	defer t.Stop()
	for range t.C {
		if os.Getppid() != ppid {
			log.Warn("supervisor is gone; exiting", "was", ppid)
			os.Exit(3)
		}
	}
}

// selfRSS returns the resident set size of this process in bytes, from
// /proc/self/statm, or 0.
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0
	}
	return resident * int64(syscall.Getpagesize())
}

// envInt reads a limit the supervisor passes in the environment. The
// fallbacks at its call sites repeat shared/config's defaults rather than
// import that package, which would link HCL into every custom worker.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

var _ shared.Control = (*server)(nil)
