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
// it starts it through package proc like a worker (no orphans), checks its
// health, respawns it with a back-off when it dies, and stops it last.
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
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	p        *proc.Process
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
		done:   make(chan struct{}),
		state:  "starting",
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	first := make(chan struct{})
	go f.run(first)
	<-first
	return f
}

// run keeps fetchd up until stop.
func (f *fetchdSup) run(first chan struct{}) {
	defer close(f.done)
	var once sync.Once
	started := func() { once.Do(func() { close(first) }) }
	defer started()
	loop := proc.CrashLoop{Policy: proc.FetchdPolicy}
	blocked := time.Duration(0)
	for f.ctx.Err() == nil {
		// A cache_dir held by another lanesd's fetchd would make every
		// fetchd of ours wait for the lock and exit: a crash loop. Probe
		// the lock (no process) until the other lets go; soon at first, as
		// the holder may be the fetchd of a lanesd that just died.
		if err := f.cacheInUse(); err != nil {
			blocked = min(max(2*blocked, 250*time.Millisecond), loop.Policy.BackoffMax)
			f.mu.Lock()
			was := f.state
			f.state, f.lastErr = "blocked", err.Error()
			f.mu.Unlock()
			started()
			if was != "blocked" {
				f.log.Error("fetchd not started: its cache_dir is in use; the site runs unthemed until it is free",
					"error", err)
			}
			select {
			case <-f.ctx.Done():
				return
			case <-time.After(blocked):
			}
			continue
		}
		blocked = 0
		p := proc.New(f.spec)
		f.mu.Lock()
		f.p = p
		f.mu.Unlock()
		err := p.Start(f.ctx)
		started()
		backoff := time.Duration(0)
		if err != nil {
			f.setState("restarting", err.Error())
			f.log.Error("fetchd failed to start", "error", err)
			backoff = loop.Early(err.Error(), time.Now())
		} else {
			f.setState("ready", "")
			f.log.Info("fetchd ready", "pid", p.PID())
			up := time.Now()
			f.watch(p)
			if f.ctx.Err() != nil {
				return
			}
			f.setState("restarting", p.ExitErr())
			f.log.Warn("fetchd exited; restarting", "pid", p.PID(), "status", p.ExitErr())
			if time.Since(up) >= loop.Policy.StableAfter {
				loop.Reset()
			} else {
				backoff = loop.Early(p.ExitErr(), time.Now())
			}
		}
		f.mu.Lock()
		f.restarts++
		f.mu.Unlock()
		select {
		case <-f.ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// watch returns when p has exited, or when the supervisor stops (after
// stopping p). A fetchd that fails its health check is killed.
func (f *fetchdSup) watch(p *proc.Process) {
	t := time.NewTicker(proc.FetchdPolicy.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-p.Exited():
			return
		case <-f.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			p.Stop(ctx)
			cancel()
			return
		case <-t.C:
			if _, err := p.Health(f.ctx); err != nil && f.ctx.Err() == nil {
				f.log.Error("fetchd failed its health check; killing", "pid", p.PID(), "error", err)
				p.Kill()
			}
		}
	}
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
	if f.p != nil {
		out.PID = f.p.PID()
	}
	f.mu.Unlock()
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
