// Package supervisor is the lanes front process: the front (package
// front: the fasthttp listener and what it does to each request), the
// classification of each request into a lane (package mapping, over
// package router's patterns), the lanes and their worker processes
// (package lane, package proc), and the admin listener (package admin).
// A reload builds one immutable state and stores it once; the front reads
// it as its Snapshot. Run owns the process's lifetime; the signal loop in
// cmd/lanesd drives it.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
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
	"github.com/lanes-dev/lanes/shared/logging"
	"github.com/lanes-dev/lanes/supervisor/admin"
	"github.com/lanes-dev/lanes/supervisor/front"
	"github.com/lanes-dev/lanes/supervisor/lane"
	"github.com/lanes-dev/lanes/supervisor/listener"
	"github.com/lanes-dev/lanes/supervisor/mapping"
	"github.com/lanes-dev/lanes/supervisor/proc"
	"github.com/lanes-dev/lanes/supervisor/systemd"
)

// startTimeout bounds how long Run waits for every lane's first workers.
const startTimeout = 30 * time.Second

// Options are what the supervisor needs besides its config.
type Options struct {
	Log hclog.Logger
	// Builtin is the argv that runs the built-in worker (lanesd's own
	// "worker" subcommand); lanes without a command run it.
	Builtin []string
	// Shim is the argv of the shim under which an exec worker runs
	// (lanesd's own "exec-shim" subcommand); exec lanes need it.
	Shim []string
	// Fetchd is the argv that runs fetchd (lanesd's own "fetchd"
	// subcommand); a themed app needs it.
	Fetchd []string
	// FetchdCacheInUse, if set, reports that another lanesd's fetchd holds
	// a cache_dir (fetchd.CacheInUse); fetchd is then not started until it
	// is free, rather than crash-looping on the lock.
	FetchdCacheInUse func(dir string) error
	// LogOutput is where Log writes (default stderr): the access log
	// writes its lines there itself, in Log's format.
	LogOutput io.Writer
	// Listeners are the front and admin sockets systemd passed (socket
	// activation), used instead of binding listen and admin.listen; Run
	// closes them. A nil one is bound as usual.
	Listeners systemd.Listeners
	// Notify tells systemd what Run and Reload do (sd_notify); nil: no
	// one is told.
	Notify *systemd.Notifier
}

// Supervisor is one running lanes front.
type Supervisor struct {
	opt     Options
	log     hclog.Logger
	warn    *logging.Limiter // for warnings a flood of requests can repeat: rate-limited
	access  *front.AccessLog
	spawner *proc.Spawner
	runDir  string
	started time.Time

	state    atomic.Pointer[state] // the one copy of the config, with what goes with it
	fetchd   *fetchdSup            // nil when no theme is used
	maps     *mapping.Set          // static, runtime and learned mappings; outlives reloads
	retiring retiring              // lanes reloads removed, until they have stopped
	metrics  *metrics
	reloadMu sync.Mutex // one reload, resize or drain of the lane set at a time
	lastLoad atomic.Pointer[api.ReloadLog]
	events   eventLog // recent events, for GET /api/events
	samples  sampler  // the last 15 minutes of each lane, for GET /api/samples

	front   *front.Front // made by Run
	server  *fasthttp.Server
	admin   *admin.Server
	frontLn *listener.Listener
	adminLn *listener.Listener

	mu        sync.Mutex
	frontAddr net.Addr
	ready     chan struct{}
	stopping  atomic.Bool // shutdown has begun
	abort     chan struct{}
	abortOnce sync.Once
}

// state is what a request needs — the config, its lanes, the routing
// table — swapped as one piece: a reload, or a change of mappings, builds a
// new one and stores it once, so a request sees the old state or the new
// one, never half of each. The table's lane indices refer to lanes of the
// same state, and to nothing else. Before Run has started the lanes, the
// state holds the config alone.
type state struct {
	cfg   *config.Config
	lanes []*lane.Lane   // in tbl's lane order
	tbl   *mapping.Table // compiled for lanes
	// front is this same state as the front reads it.
	front *front.Snapshot
}

// newState is the state of cfg with tbl, whose lanes are taken from
// byName.
func newState(cfg *config.Config, access *front.AccessLog, byName map[string]*lane.Lane, tbl *mapping.Table) *state {
	st := &state{cfg: cfg, tbl: tbl}
	snap := &front.Snapshot{Config: cfg, Table: tbl, UpstreamTLS: strings.HasPrefix(cfg.App.Upstream, "https:")}
	if cfg.Log.AccessLog {
		snap.Access = access
	}
	for _, name := range tbl.Lanes() {
		l := byName[name]
		st.lanes = append(st.lanes, l)
		snap.Lanes = append(snap.Lanes, frontLane{l})
	}
	st.front = snap
	return st
}

// byName is st's lanes by name.
func (st *state) byName() map[string]*lane.Lane {
	m := make(map[string]*lane.Lane, len(st.lanes))
	for _, l := range st.lanes {
		m[l.Name()] = l
	}
	return m
}

// publish stores a table compiled by a runtime or learned change of
// mappings with the lanes and config it was compiled for: the current
// ones. The Set calls it with its lock held, and a reload stores its state
// under the same lock (mapping.Set.Reconfigure), so neither can overwrite
// the other's newer state.
func (s *Supervisor) publish(tbl *mapping.Table) {
	st := s.state.Load()
	if st.tbl == nil {
		return // not started: Run builds the first state from the latest table
	}
	s.state.Store(newState(st.cfg, s.access, st.byName(), tbl))
}

// mappingConfig is cfg's mappings as package mapping takes them.
func mappingConfig(cfg *config.Config) mapping.Config {
	c := mapping.Config{Static: map[string][]config.Pattern{}, AutoMap: cfg.AutoMap}
	for _, l := range cfg.Lanes {
		c.Lanes = append(c.Lanes, l.Name)
		c.Static[l.Name] = l.Map
	}
	return c
}

// lane returns the lane named name, or nil.
func (st *state) lane(name string) *lane.Lane {
	for _, l := range st.lanes {
		if l.Name() == name {
			return l
		}
	}
	return nil
}

// New checks what can be checked before anything starts.
func New(cfg *config.Config, opt Options) (*Supervisor, error) {
	if opt.Log == nil {
		opt.Log = hclog.NewNullLogger()
	}
	if len(opt.Builtin) == 0 {
		return nil, errors.New("supervisor: no built-in worker command")
	}
	if len(opt.Shim) == 0 && slices.ContainsFunc(cfg.Lanes, func(l config.Lane) bool { return l.IsExec() }) {
		return nil, errors.New("supervisor: no exec-shim command for the exec lanes")
	}
	s := &Supervisor{
		opt:   opt,
		log:   opt.Log,
		ready: make(chan struct{}),
		abort: make(chan struct{}),
	}
	s.state.Store(&state{cfg: cfg})
	s.retiring.init(s.log)
	s.warn = logging.NewLimiter(s.log, time.Second)
	s.metrics = newMetrics(s)
	if opt.LogOutput == nil {
		opt.LogOutput = os.Stderr
	}
	s.access = front.NewAccessLog(s.log.Name()+".access", cfg.Log.JSON, opt.LogOutput)
	return s, nil
}

// Ready is closed once both listeners accept.
func (s *Supervisor) Ready() <-chan struct{} { return s.ready }

// serving says Run has started serving and not begun to stop.
func (s *Supervisor) serving() bool {
	select {
	case <-s.ready:
		return !s.stopping.Load()
	default:
		return false
	}
}

// FrontAddr returns the front's bound address once Ready.
func (s *Supervisor) FrontAddr() net.Addr { s.mu.Lock(); defer s.mu.Unlock(); return s.frontAddr }

// Abort stops at once: workers are SIGKILLed and Run returns without
// waiting for requests. Safe to call twice.
func (s *Supervisor) Abort() { s.abortOnce.Do(func() { close(s.abort) }) }

// Run starts the lanes, serves until ctx ends, then stops gracefully: it
// stops accepting, lets in-flight requests finish for up to
// shutdown_timeout, and stops every worker. Abort cuts that short.
func (s *Supervisor) Run(ctx context.Context) (err error) {
	cfg := s.state.Load().cfg
	s.started = time.Now()
	defer s.access.Flush()
	defer s.warn.Flush()
	if err := s.makeRunDir(); err != nil {
		return err
	}
	defer os.RemoveAll(s.runDir)
	s.spawner = proc.NewSpawner()
	s.front = s.newFront(cfg)

	// Bind first: a port in use should fail before workers are spawned.
	fl, al, err := s.listeners(cfg)
	if err != nil {
		return err
	}
	defer fl.Close()
	defer al.Close()
	// Neither listener may stop because of what clients do: descriptor
	// exhaustion is waited out, and the admin port, which needs no token
	// to connect to, has a connection cap of its own.
	s.frontLn = listener.Wrap(fl, listener.Options{Name: "front", Log: s.log})
	s.adminLn = listener.Wrap(al, listener.Options{Name: "admin", Log: s.log, MaxConns: cfg.Admin.MaxConns})

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
	if themed(cfg) && len(s.opt.Fetchd) > 0 {
		s.fetchd = s.startFetchd(cfg)
		defer s.fetchd.stop() // after the lanes: workers ask it until they stop
	}
	st, err := s.startLanes(sctx, cfg)
	stopped := sctx.Err() != nil
	cancel()
	if err != nil {
		if stopped {
			s.opt.Notify.Stopping("stopped while starting")
			s.log.Info("stopped while starting")
			return nil
		}
		return err
	}
	s.state.Store(st)
	// The Set sweeps and saves until mctx ends, and saves once more then:
	// wait for it, so that a stop does not lose the last changes.
	mctx, mcancel := context.WithCancel(context.Background())
	mdone := make(chan struct{})
	go func() { defer close(mdone); s.maps.Run(mctx) }()
	defer func() { mcancel(); <-mdone }()

	s.server = s.front.Server()
	adminListen := cfg.Admin.Listen
	if s.opt.Listeners.Admin != nil {
		adminListen = al.Addr().String() // what systemd bound is what counts
	}
	if al.Addr().Network() == "tcp" && admin.WarnExposed(adminListen, cfg.Admin.Token) {
		s.log.Warn("admin listener is reachable from other machines and has no token; set admin.token_file", "listen", adminListen)
	}
	s.admin = admin.New(admin.Options{
		Token:   cfg.Admin.Token,
		Listen:  adminListen,
		Backend: s,
		Metrics: s.metricsHandler(),
		Log:     s.log.Named("admin"),
	})
	errc := make(chan error, 2)
	go func() { errc <- s.server.Serve(s.frontLn) }()
	go func() { errc <- s.admin.Serve(s.adminLn) }()
	s.mu.Lock()
	s.frontAddr = fl.Addr()
	s.mu.Unlock()
	s.log.Info("listening", "front", fl.Addr().String(), "admin", al.Addr().String(), "lanes", len(st.lanes))
	close(s.ready)
	s.opt.Notify.Ready(s.summary())
	go s.opt.Notify.Run(mctx, s.summary)
	sdone := make(chan struct{})
	go func() { defer close(sdone); s.sampleLoop(mctx) }()
	defer func() { mcancel(); <-sdone }()

	select {
	case <-ctx.Done():
		return s.shutdown(false)
	case <-s.abort:
		return s.shutdown(true)
	case err := <-errc:
		s.shutdown(true)
		return fmt.Errorf("listener stopped: %w", err)
	}
}

// listeners returns the front and admin listeners: those systemd passed
// (Options.Listeners), else bound to listen and admin.listen.
func (s *Supervisor) listeners(cfg *config.Config) (front, adm net.Listener, err error) {
	take := func(ln net.Listener, what, listen string) (net.Listener, error) {
		if ln != nil {
			s.log.Info("listener from systemd socket activation", "listener", what, "addr", ln.Addr().String(), "configured", listen)
			return ln, nil
		}
		return net.Listen("tcp", listen)
	}
	if front, err = take(s.opt.Listeners.Front, systemd.FrontName, cfg.Listen); err != nil {
		s.opt.Listeners.Close()
		return nil, nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if adm, err = take(s.opt.Listeners.Admin, systemd.AdminName, cfg.Admin.Listen); err != nil {
		front.Close()
		s.opt.Listeners.Close()
		return nil, nil, fmt.Errorf("admin listen %s: %w", cfg.Admin.Listen, err)
	}
	return front, adm, nil
}

// summary is the one line systemctl status shows (sd_notify STATUS=), once
// Run serves. It reads the whole status, every lane's lock included, so that it also
// serves as the watchdog's proof of life (systemd.Notifier.Run).
func (s *Supervisor) summary() string {
	st := s.Status()
	var workers, busy, queued int
	var looping []string
	for _, l := range st.Lanes {
		workers += len(l.Workers)
		queued += l.Queued
		for _, w := range l.Workers {
			if w.Inflight > 0 {
				busy++
			}
		}
		if l.CrashLoop {
			looping = append(looping, l.Name)
		}
	}
	line := fmt.Sprintf("serving on %s (admin %s): %d lanes, %d workers (%d busy), %d queued",
		s.FrontAddr(), s.adminLn.Addr(), len(st.Lanes), workers, busy, queued)
	if len(looping) > 0 {
		line += "; crash loop in " + strings.Join(looping, ", ")
	}
	return line
}

// laneEnv is what every lane of cfg shares.
func (s *Supervisor) laneEnv(cfg *config.Config) lane.Env {
	return lane.Env{
		Spawner:   s.spawner,
		RunDir:    s.runDir,
		Builtin:   s.opt.Builtin,
		Shim:      s.opt.Shim,
		WorkerEnv: s.workerEnv(cfg),
		Log:       s.log,
		Event:     s.events.add,
		Upstream:  cfg.App.Upstream,
	}
}

// lanesOf returns the lanes of cfg by name: those of have that it keeps,
// and the ones it adds, made but not started, which it also returns.
func (s *Supervisor) lanesOf(cfg *config.Config, have map[string]*lane.Lane) (map[string]*lane.Lane, []*lane.Lane) {
	env := s.laneEnv(cfg)
	byName := make(map[string]*lane.Lane, len(cfg.Lanes))
	var made []*lane.Lane
	for _, lc := range cfg.Lanes {
		l := have[lc.Name]
		// A lane that becomes direct, or stops being direct (it now runs
		// exec or command workers), is a new lane; the old one retires.
		if l == nil || l.Direct() != lc.Direct {
			l = lane.New(lc, env)
			made = append(made, l)
		}
		byName[lc.Name] = l
	}
	return byName, made
}

// startAll starts lanes in parallel; on an error it stops every one of them.
func startAll(ctx context.Context, lanes []*lane.Lane) error {
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	errs := make([]error, len(lanes))
	var wg sync.WaitGroup
	for i, l := range lanes {
		wg.Go(func() { errs[i] = l.Start(sctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		stopAll(context.Background(), lanes, true)
		return err
	}
	return nil
}

// startLanes makes the mappings and starts the lanes of cfg, and returns
// the first state.
func (s *Supervisor) startLanes(ctx context.Context, cfg *config.Config) (*state, error) {
	mc := mappingConfig(cfg)
	mc.Publish = s.publish
	mc.Event = s.mapEvent
	if cfg.StateDir != "" {
		// Runtime and learned mappings survive restarts there; a reload
		// cannot move it (fixedChanges).
		mc.StateFile = filepath.Join(cfg.StateDir, mapping.StateFileName)
	}
	m, err := mapping.New(mc, s.log) // it names its logger "map"
	if err != nil {
		return nil, fmt.Errorf("mappings: %w", err)
	}
	s.maps = m
	byName, made := s.lanesOf(cfg, nil)
	if err := startAll(ctx, made); err != nil {
		return nil, err
	}
	return newState(cfg, s.access, byName, m.Table()), nil
}

// stopAll stops lanes at once (see lane.Stop) and returns when all their
// workers are gone.
func stopAll(ctx context.Context, lanes []*lane.Lane, immediate bool) {
	var wg sync.WaitGroup
	for _, l := range lanes {
		wg.Go(func() { l.Stop(ctx, immediate) })
	}
	wg.Wait()
}

// workerEnv is the environment every worker of cfg gets; its lane and
// process add the rest.
func (s *Supervisor) workerEnv(cfg *config.Config) []string {
	app := cfg.App.Wire()
	env := shared.WorkerEnv{
		LogLevel:      cfg.Log.Level.String(),
		App:           &app,
		MaxHeaderSize: cfg.Front.MaxHeaderSize,
		MaxBodySize:   cfg.Front.MaxBodySize,
		DebugHeaders:  cfg.DebugHeaders,
	}
	if s.fetchd != nil {
		env.Theme = workerTheme(cfg)
		if env.Theme != nil {
			env.FetchdSocket = s.fetchdSocket()
		}
	}
	return env.Encode()
}

// shutdown stops the listeners, waits for in-flight requests (unless
// immediate) and stops every lane, those reloads removed that have not
// stopped yet included. Abort during a graceful shutdown cuts it short.
func (s *Supervisor) shutdown(immediate bool) error {
	s.stopping.Store(true)
	s.opt.Notify.Stopping("stopping")
	s.reloadMu.Lock() // no reload may start lanes behind the stop
	defer s.reloadMu.Unlock()
	st := s.state.Load()
	lanes := append(slices.Clone(st.lanes), s.retiring.take()...)
	if immediate {
		s.log.Warn("stopping immediately")
		s.retiring.kill()
		stopAll(context.Background(), lanes, true)
		s.retiring.wait(context.Background())
		return nil
	}
	s.log.Info("stopping", "timeout", logging.Dur(st.cfg.ShutdownTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), st.cfg.ShutdownTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.abort:
			s.log.Warn("stopping immediately")
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := s.server.ShutdownWithContext(ctx); err != nil {
		s.log.Warn("in-flight requests cut off", "error", err)
	}
	stopAll(ctx, lanes, false)
	s.retiring.wait(ctx)
	s.access.Flush()
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	_ = s.admin.Shutdown(actx)
	s.log.Info("stopped")
	return nil
}

// Status is the admin API's /api/status document.
func (s *Supervisor) Status() api.Status {
	st := s.state.Load()
	out := api.Status{
		PID:     os.Getpid(),
		UptimeS: time.Since(s.started).Round(time.Millisecond).Seconds(),
		Listen:  st.cfg.Listen,
		Config:  st.cfg.File,
		Lanes:   make([]api.Lane, 0, len(st.lanes)),
		Reload:  s.lastLoad.Load(),
	}
	if s.front != nil {
		out.Front.Retries, out.Front.Truncated = s.front.Retries(), s.front.Truncated()
	}
	out.Fetchd, out.Themes = s.fetchd.status()
	if s.frontLn != nil {
		out.Front.AcceptErrors = s.frontLn.AcceptErrors() + s.adminLn.AcceptErrors()
	}
	for _, l := range st.lanes {
		out.Lanes = append(out.Lanes, l.Status())
	}
	out.AutoMap = s.maps.AutoMapStatus()
	return out
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

// cleanStaleRunDirs removes the run directories of dead supervisors. Only
// a real directory (not a symlink) owned by this user is touched: lanesd
// run as root must not delete another user's directory that matches the
// name.
func cleanStaleRunDirs(log hclog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "lanes-*"))
	for _, d := range dirs {
		if !ownDir(d) {
			continue
		}
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

// ownDir says path is a directory, not a symlink, owned by the current uid.
func ownDir(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}
