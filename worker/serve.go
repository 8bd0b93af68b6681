// Package worker is the worker side of lanes for Go programs: Serve turns
// any Go program with a fasthttp handler into a lane worker. (A program of
// any other language is an exec lane worker and needs nothing of this.) The supervisor starts the program
// through go-plugin, talks to it over the control plane (health, drain) and
// sends it requests over a unix socket (the data plane). Package app holds
// the built-in worker that lanesd itself runs.
//
// A custom worker links this package and shared, never shared/config: HCL
// stays out of it (TestNoHCLInCustomWorkers).
package worker

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/logging"
	"github.com/lanes-dev/lanes/worker/internal/dataplane"
)

// Options change how Serve runs a worker. The zero value is the usual one.
type Options struct {
	// Log is the worker's logger; it must write to stderr, which lanesd
	// reads (stdout is go-plugin's). nil: hclog JSON on stderr at the
	// level lanesd gives its workers.
	Log hclog.Logger
	// OnDrain, if set, is called once, on a goroutine of its own, when
	// lanesd begins to drain the worker (a drain, a recycle, an idle
	// shrink, a shutdown): it sends no new requests, and the worker exits
	// once those it runs have ended. Long polls and streams should finish
	// up. Draining(ctx) tells the same to a handler.
	OnDrain func()
}

// Errors Serve returns.
var (
	// ErrNotStarted: the program was run by hand, not by lanesd.
	ErrNotStarted = errors.New("lanes worker: this program is a lanes worker; lanesd starts it from a lane's command")
	// ErrSupervisorGone: the lanesd that started the worker is gone.
	ErrSupervisorGone = errors.New("lanes worker: the supervisor is gone")
)

// Serve runs handler as a lane worker until lanesd stops it, and returns
// then (nil), or at once with an error when it cannot serve (ErrNotStarted
// when run by hand). Deferred cleanup in the caller runs. Nothing may be
// written to stdout before Serve: go-plugin uses it for the handshake.
//
//	func main() {
//		if err := worker.Serve(handler); err != nil {
//			log.Fatal(err)
//		}
//	}
func Serve(handler fasthttp.RequestHandler) error { return ServeWith(handler, Options{}) }

// ServeWith is Serve with options.
func ServeWith(handler fasthttp.RequestHandler, o Options) error {
	if os.Getenv(shared.Handshake.MagicCookieKey) != shared.Handshake.MagicCookieValue {
		return ErrNotStarted
	}
	env, err := shared.DecodeWorkerEnv(os.Getenv)
	log := o.Log
	if log == nil {
		log = logging.Worker(env.LogLevel)
	}
	if err != nil {
		log.Error("cannot start", "error", err)
		return err
	}
	if env.Socket == "" {
		return ErrNotStarted
	}
	sock := env.Socket
	log = log.With("pid", os.Getpid()) // the supervisor adds the lane
	// go-plugin re-logs plain stderr lines at DEBUG only: route the standard
	// library's log package through hclog so a handler's log.Printf shows
	// at its level in the supervisor's log.
	stdlog.SetFlags(0)
	stdlog.SetOutput(log.Named("log").StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}))

	if !shared.WatchSupervisor(log, env.ParentPID) {
		return ErrSupervisorGone
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
		return fmt.Errorf("lanes worker: listen on %s: %w", sock, err)
	}
	_ = os.Chmod(sock, 0o600)

	w := &server{log: log, handler: handler, idle: make(chan struct{}, 1), onDrain: o.OnDrain, drained: make(chan struct{})}
	srv := dataplane.NewServer(w.serve, log, dataplane.Limits{
		MaxHeaderSize: env.MaxHeaderSize,
		MaxBodySize:   env.MaxBodySize,
	})
	failed := make(chan error, 1)
	go func() {
		if err := srv.Serve(dataplane.Listener{Listener: ln}); err != nil {
			log.Error("data plane stopped", "error", err)
			failed <- err
			os.Exit(1) // plugin.Serve below cannot be interrupted
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
	_ = srv.Shutdown()
	_ = os.Remove(sock)
	select {
	case err := <-failed:
		return err
	default:
		return nil
	}
}

// Lane returns the name of the lane this worker serves ("" outside lanes).
func Lane() string { return os.Getenv(shared.EnvLane) }

// drainKey marks a handler's context as that of a worker being drained.
type drainKey struct{}

// Draining says the worker serving ctx (a handler's *fasthttp.RequestCtx)
// is being drained: lanesd sends it no new request and it will exit once
// the running ones end.
func Draining(ctx *fasthttp.RequestCtx) bool {
	d, _ := ctx.UserValue(drainKey{}).(*atomic.Bool)
	return d != nil && d.Load()
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
	onDrain  func()
	drainOne sync.Once
	drained  chan struct{} // closed when a drain begins
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
	ctx.SetUserValue(drainKey{}, &s.draining)
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
	s.drainOne.Do(func() {
		close(s.drained)
		if s.onDrain != nil {
			go s.onDrain()
		}
	})
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
