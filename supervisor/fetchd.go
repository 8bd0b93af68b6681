package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/supervisor/proc"
)

// fetchdSup keeps the fetchd process running while the app uses a theme:
// a restarting proc.Child starts it like a worker (no orphans), checks its
// health, respawns it with a back-off when it dies, and stops it last;
// fetchdSup turns the child's events into fetchd's state and log lines.
// Workers talk to fetchd themselves, over its ThemeService socket; they
// keep serving their last theme while it is down.
type fetchdSup struct {
	log    hclog.Logger
	spec   proc.Spec
	sock   string
	dir    string // cache_dir
	inUse  func(dir string) error
	client shared.FetchdService
	close  func()
	child  *proc.Child
	first  chan struct{} // closed once the first start has ended either way
	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	state    string
	restarts uint64
	lastErr  string
}

// fetchd is supervised by proc.FetchdPolicy: the rules of lane workers,
// with a back-off capped lower (a fetchd that cannot start only costs
// theming).

// themed says cfg's app uses a theme, which is what fetchd is for.
func themed(cfg *config.Config) bool { return cfg.App.Theme != "" && cfg.Fetchd != nil }

// fetchdSocket is where fetchd serves ThemeService.
func (s *Supervisor) fetchdSocket() string { return filepath.Join(s.runDir, "fetchd-themes.sock") }

// startFetchd starts fetchd for cfg and returns once its first start has
// ended either way: a site whose theme cannot be had runs unthemed, so a
// fetchd that fails is logged and retried, never fatal.
func (s *Supervisor) startFetchd(cfg *config.Config) *fetchdSup {
	env, err := s.fetchdEnv(cfg)
	if err != nil {
		s.log.Error("fetchd not started; the site runs unthemed", "error", err)
		return nil
	}
	client, closeClient, err := shared.DialThemeService(s.fetchdSocket())
	if err != nil {
		s.log.Error("fetchd client", "error", err)
		return nil
	}
	f := &fetchdSup{
		log: s.log.Named("fetchd"),
		spec: proc.Spec{
			Command: s.opt.Fetchd,
			Env:     env,
			RunDir:  s.runDir,
			Name:    "fetchd",
			Log:     s.log.Named("fetchd"),
			Spawner: s.spawner,
		},
		sock:   s.fetchdSocket(),
		dir:    cfg.Fetchd.CacheDir,
		inUse:  s.opt.FetchdCacheInUse,
		client: client,
		close:  closeClient,
		first:  make(chan struct{}),
		done:   make(chan struct{}),
		state:  "starting",
	}
	f.child = proc.NewChild(proc.ChildSpec{
		Policy:  proc.FetchdPolicy,
		New:     func() proc.Proc { return proc.New(f.spec) },
		Restart: true,
		Hold:    f.cacheInUse,
		On:      f.on,
	})
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		defer close(f.done)
		f.child.Run(ctx)
	}()
	select {
	case <-f.first:
	case <-f.done:
	}
	return f
}

// on keeps fetchd's state and log from its child's events.
func (f *fetchdSup) on(ev proc.Event) {
	if ev.Kind != proc.Health {
		f.once.Do(func() { close(f.first) })
	}
	switch ev.Kind {
	case proc.Held:
		// A cache_dir held by another lanesd's fetchd would make every
		// fetchd of ours wait for the lock and exit: a crash loop. The
		// child probes the lock (no process) until the other lets go.
		f.mu.Lock()
		was := f.state
		f.state, f.lastErr = "blocked", ev.Err.Error()
		f.mu.Unlock()
		if was != "blocked" {
			f.log.Error("fetchd not started: its cache_dir is in use; the site runs unthemed until it is free",
				"error", ev.Err)
		}
	case proc.Failed:
		f.setState("restarting", ev.Err.Error())
		f.log.Error("fetchd failed to start", "error", ev.Err)
		f.restarted()
	case proc.Started:
		f.setState("ready", "")
		f.log.Info("fetchd ready", "pid", ev.Proc.PID())
	case proc.Health:
		if ev.Err != nil {
			f.log.Error("fetchd failed its health check; killing", "pid", ev.Proc.PID(), "error", ev.Err)
			ev.Proc.Kill()
		}
	case proc.Exited:
		f.setState("restarting", ev.Proc.ExitErr())
		f.log.Warn("fetchd exited; restarting", "pid", ev.Proc.PID(), "status", ev.Proc.ExitErr())
		f.restarted()
	}
}

func (f *fetchdSup) restarted() {
	f.mu.Lock()
	f.restarts++
	f.mu.Unlock()
}

// cacheInUse reports that another lanesd's fetchd holds the cache_dir.
func (f *fetchdSup) cacheInUse() error {
	if f.inUse == nil {
		return nil
	}
	return f.inUse(f.dir)
}

func (f *fetchdSup) setState(state, lastErr string) {
	f.mu.Lock()
	f.state, f.lastErr = state, lastErr
	f.mu.Unlock()
}

// stop stops fetchd and waits for it.
func (f *fetchdSup) stop() {
	if f == nil {
		return
	}
	f.cancel()
	<-f.done
	f.close()
}

// status fills the admin API's fetchd and themes.
func (f *fetchdSup) status() (api.Fetchd, []api.Theme) {
	if f == nil {
		return api.Fetchd{Enabled: false, State: "off"}, []api.Theme{}
	}
	f.mu.Lock()
	out := api.Fetchd{Enabled: true, State: f.state, Restarts: f.restarts, LastError: f.lastErr}
	f.mu.Unlock()
	if p := f.child.Proc(); p != nil {
		out.PID = p.PID()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	st, err := f.client.Status(ctx)
	if err != nil {
		if out.LastError == "" && !errors.Is(err, context.Canceled) {
			out.LastError = err.Error()
		}
		return out, []api.Theme{}
	}
	out.CacheEntries, out.CacheBytes = st.CacheEntries, st.CacheBytes
	if st.Themes == nil {
		st.Themes = []api.Theme{}
	}
	return out, st.Themes
}

// fetchdEnv writes fetchd's settings file for cfg into the run directory
// and returns fetchd's environment. cfg.Fetchd must be set (config sets it
// whenever the app uses a theme).
func (s *Supervisor) fetchdEnv(cfg *config.Config) ([]string, error) {
	set := shared.FetchdSettings{Fetchd: cfg.Fetchd.Wire(), Themes: make([]shared.ThemeWire, len(cfg.Themes))}
	for i, t := range cfg.Themes {
		set.Themes[i] = t.Wire()
	}
	if abs, err := filepath.Abs(set.Fetchd.CacheDir); err == nil {
		set.Fetchd.CacheDir = abs
	}
	file := filepath.Join(s.runDir, "fetchd-settings.json")
	if err := shared.WriteFetchdSettings(file, set); err != nil {
		return nil, err
	}
	return shared.FetchdEnv{
		Socket:    s.fetchdSocket(),
		Config:    file,
		ParentPID: os.Getpid(),
		LogLevel:  cfg.Log.Level.String(),
	}.Encode(), nil
}

// workerTheme is what a worker of cfg needs to theme: the app's theme block
// and fetchd's stale_wait; nil when the app uses no theme.
func workerTheme(cfg *config.Config) *shared.WorkerTheme {
	if !themed(cfg) {
		return nil
	}
	for _, t := range cfg.Themes {
		if t.Name == cfg.App.Theme {
			return &shared.WorkerTheme{Theme: t.Wire(), StaleWait: cfg.Fetchd.StaleWait}
		}
	}
	return nil
}
