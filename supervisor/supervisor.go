// Package supervisor is the lanes front process: the fasthttp listener, the
// classification of each request into a lane (package router), the lanes
// and their worker processes (package lane), and the admin listener
// (package admin). Run owns the process's lifetime; the signal loop in
// cmd/lanesd drives it.
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/supervisor/admin"
	"github.com/lanes-dev/lanes/supervisor/lane"
	"github.com/lanes-dev/lanes/supervisor/router"
)

// startTimeout bounds how long Run waits for every lane's first workers.
const startTimeout = 30 * time.Second

// Options are what the supervisor needs besides its config.
type Options struct {
	Log hclog.Logger
	// Builtin is the argv that runs the built-in worker (lanesd's own
	// "worker" subcommand); lanes without a command run it.
	Builtin []string
}

// Supervisor is one running lanes front.
type Supervisor struct {
	cfg     *config.Config
	opt     Options
	log     hclog.Logger
	access  hclog.Logger // nil when access_log = false
	spawner *lane.Spawner
	runDir  string
	started time.Time

	state atomic.Pointer[state]

	front *fasthttp.Server
	admin *admin.Server

	mu        sync.Mutex
	frontAddr net.Addr
	ready     chan struct{}
	abort     chan struct{}
	abortOnce sync.Once
}

// state is what a request needs, swapped as one piece.
type state struct {
	lanes  []*lane.Lane
	routes *router.Table
}

// New checks what can be checked before anything starts.
func New(cfg *config.Config, opt Options) (*Supervisor, error) {
	if opt.Log == nil {
		opt.Log = hclog.NewNullLogger()
	}
	if len(opt.Builtin) == 0 {
		return nil, errors.New("supervisor: no built-in worker command")
	}
	s := &Supervisor{
		cfg:   cfg,
		opt:   opt,
		log:   opt.Log,
		ready: make(chan struct{}),
		abort: make(chan struct{}),
	}
	if cfg.Log.AccessLog {
		s.access = opt.Log.Named("access")
	}
	return s, nil
}

// Ready is closed once both listeners accept.
func (s *Supervisor) Ready() <-chan struct{} { return s.ready }

// FrontAddr returns the front's bound address once Ready.
func (s *Supervisor) FrontAddr() net.Addr { s.mu.Lock(); defer s.mu.Unlock(); return s.frontAddr }

// Abort stops at once: workers are SIGKILLed and Run returns without
// waiting for requests. Safe to call twice.
func (s *Supervisor) Abort() { s.abortOnce.Do(func() { close(s.abort) }) }

// Run starts the lanes, serves until ctx ends, then stops gracefully: it
// stops accepting, lets in-flight requests finish for up to
// shutdown_timeout, and stops every worker. Abort cuts that short.
func (s *Supervisor) Run(ctx context.Context) (err error) {
	s.started = time.Now()
	if err := s.makeRunDir(); err != nil {
		return err
	}
	defer os.RemoveAll(s.runDir)
	s.spawner = lane.NewSpawner()

	// Bind first: a port in use should fail before workers are spawned.
	fl, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	defer fl.Close()
	al, err := net.Listen("tcp", s.cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", s.cfg.Admin.Listen, err)
	}
	defer al.Close()

	// A stop asked for while the lanes start ends the start: a graceful
	// one (ctx) is still a clean exit; Abort kills what started.
	sctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.abort:
			cancel()
		case <-sctx.Done():
		}
	}()
	st, err := s.startLanes(sctx)
	stopped := sctx.Err() != nil
	cancel()
	if err != nil {
		if stopped {
			s.log.Info("stopped while starting")
			return nil
		}
		return err
	}
	s.state.Store(st)

	s.front = s.newFront()
	if admin.WarnExposed(s.cfg.Admin.Listen, s.cfg.Admin.Token) {
		s.log.Warn("admin listener is reachable from other machines and has no token; set admin.token_file", "listen", s.cfg.Admin.Listen)
	}
	s.admin = admin.New(admin.Options{
		Token:   s.cfg.Admin.Token,
		Listen:  s.cfg.Admin.Listen,
		Backend: statusOnly{s},
		Log:     s.log.Named("admin"),
	})
	errc := make(chan error, 2)
	go func() { errc <- s.front.Serve(fl) }()
	go func() { errc <- s.admin.Serve(al) }()
	s.mu.Lock()
	s.frontAddr = fl.Addr()
	s.mu.Unlock()
	s.log.Info("listening", "front", fl.Addr().String(), "admin", al.Addr().String(), "lanes", len(st.lanes))
	close(s.ready)

	select {
	case <-ctx.Done():
		return s.shutdown(st, false)
	case <-s.abort:
		return s.shutdown(st, true)
	case err := <-errc:
		s.shutdown(st, true)
		return fmt.Errorf("listener stopped: %w", err)
	}
}

func (s *Supervisor) startLanes(ctx context.Context) (*state, error) {
	env := lane.Env{
		Spawner:   s.spawner,
		RunDir:    s.runDir,
		Builtin:   s.opt.Builtin,
		WorkerEnv: s.workerEnv(),
		Log:       s.log,
	}
	st := &state{}
	var routes []router.Route
	def := 0
	for i, lc := range s.cfg.Lanes {
		st.lanes = append(st.lanes, lane.New(lc, env))
		if lc.Name == config.DefaultLaneName {
			def = i
		}
		for _, p := range lc.Map {
			routes = append(routes, router.Route{Method: p.Method, Path: p.Path, Lane: i})
		}
	}
	t, err := router.Compile(routes, def)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	st.routes = t

	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	errs := make([]error, len(st.lanes))
	var wg sync.WaitGroup
	for i, l := range st.lanes {
		wg.Go(func() { errs[i] = l.Start(sctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		st.stop(context.Background(), true)
		return nil, err
	}
	return st, nil
}

// stop stops every lane at once (see lane.Stop) and returns when all their
// workers are gone.
func (st *state) stop(ctx context.Context, immediate bool) {
	var wg sync.WaitGroup
	for _, l := range st.lanes {
		wg.Go(func() { l.Stop(ctx, immediate) })
	}
	wg.Wait()
}

func (s *Supervisor) workerEnv() []string {
	app, _ := json.Marshal(s.cfg.App)
	return []string{
		shared.EnvLogLevel + "=" + s.cfg.Log.Level.String(),
		shared.EnvApp + "=" + string(app),
		shared.EnvMaxHeaderSize + "=" + strconv.Itoa(s.cfg.Front.MaxHeaderSize),
		shared.EnvMaxBodySize + "=" + strconv.Itoa(s.cfg.Front.MaxBodySize),
	}
}

// shutdown stops the listeners, waits for in-flight requests (unless
// immediate) and stops every lane. Abort during a graceful shutdown cuts
// it short.
func (s *Supervisor) shutdown(st *state, immediate bool) error {
	if immediate {
		s.log.Warn("stopping immediately")
		st.stop(context.Background(), true)
		return nil
	}
	s.log.Info("stopping", "timeout", s.cfg.ShutdownTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.abort:
			s.log.Warn("stopping immediately")
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := s.front.ShutdownWithContext(ctx); err != nil {
		s.log.Warn("in-flight requests cut off", "error", err)
	}
	st.stop(ctx, false)
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	_ = s.admin.Shutdown(actx)
	s.log.Info("stopped")
	return nil
}

// status is the admin API's /api/status document.
func (s *Supervisor) status() any {
	st := s.state.Load()
	lanes := make([]lane.Status, 0, len(st.lanes))
	for _, l := range st.lanes {
		lanes = append(lanes, l.Status())
	}
	return map[string]any{
		"pid":      os.Getpid(),
		"uptime_s": time.Since(s.started).Round(time.Millisecond).Seconds(),
		"listen":   s.cfg.Listen,
		"config":   s.cfg.File,
		"lanes":    lanes,
		"fetchd":   map[string]any{"enabled": false},
	}
}

// makeRunDir creates the private 0700 directory for worker sockets, after
// removing those of supervisors that died without cleaning up.
func (s *Supervisor) makeRunDir() error {
	cleanStaleRunDirs(s.log)
	dir, err := os.MkdirTemp("", "lanes-")
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("run directory: %w", err)
	}
	s.runDir = dir
	return nil
}

func cleanStaleRunDirs(log hclog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "lanes-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			log.Info("removing stale run directory", "dir", d, "owner", pid)
			os.RemoveAll(d)
		}
	}
}

// statusOnly is a stopgap admin.Backend until the supervisor implements it:
// status through JSON, every other call refused. (Admin branch; the lead
// replaces it when merging.)
type statusOnly struct{ s *Supervisor }

func (b statusOnly) Status() (st api.Status) {
	raw, _ := json.Marshal(b.s.status())
	_ = json.Unmarshal(raw, &st)
	return st
}
func (statusOnly) Mappings() []api.Mapping { return nil }
func (statusOnly) Map(api.MapRequest) (api.Mapping, error) {
	return api.Mapping{}, api.Errorf(501, "not implemented")
}
func (statusOnly) Unmap(api.UnmapRequest) error { return api.Errorf(501, "not implemented") }
func (statusOnly) Resize(string, api.ResizeRequest) (api.ResizeResult, error) {
	return api.ResizeResult{}, api.Errorf(501, "not implemented")
}
func (statusOnly) Drain(string) (api.DrainResult, error) {
	return api.DrainResult{}, api.Errorf(501, "not implemented")
}
func (statusOnly) Reload() (api.ReloadResult, error) {
	return api.ReloadResult{}, api.Errorf(501, "not implemented")
}
