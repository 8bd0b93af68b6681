package supervisor

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/supervisor/mapping"
)

// Requests lists the requests running on workers now, longest first.
func (s *Supervisor) Requests() []api.InflightRequest {
	now := time.Now()
	out := []api.InflightRequest{}
	for _, l := range s.state.Load().lanes {
		out = l.Requests(out, now)
	}
	for _, l := range s.retiring.lanes() {
		out = l.Requests(out, now)
	}
	slices.SortFunc(out, func(a, b api.InflightRequest) int { return cmp.Compare(b.Elapsed, a.Elapsed) })
	return out
}

// Events returns the recent events with an id above since.
func (s *Supervisor) Events(since uint64) []api.Event { return s.events.since(since) }

// mapEvent is the mappings' event hook: learned and forgotten mappings.
func (s *Supervisor) mapEvent(kind, laneName, method, path, detail string) {
	s.events.add(api.Event{Kind: kind, Lane: laneName, Method: method, Path: path, Detail: detail})
}

// Mappings lists every mapping: static, runtime and learned.
func (s *Supervisor) Mappings() []api.Mapping { return s.maps.List() }

// Map adds a runtime mapping; it wins over a static one for the same
// pattern.
func (s *Supervisor) Map(r api.MapRequest) (api.Mapping, error) {
	return s.maps.Add(r.Lane, r.Method, r.Pattern) // the admin API logs it, with the caller
}

// Unmap removes a runtime or learned mapping.
func (s *Supervisor) Unmap(r api.UnmapRequest) error {
	return s.maps.Remove(r.Method, r.Pattern) // the admin API logs it, with the caller
}

// Resize sets a lane's min_workers and max_workers (admin API, lanectl,
// SIGTTIN/SIGTTOU).
func (s *Supervisor) Resize(name string, r api.ResizeRequest) (api.ResizeResult, error) {
	l := s.state.Load().lane(name)
	if l == nil {
		return api.ResizeResult{}, s.noLane(name)
	}
	return l.Resize(r.MinWorkers, r.MaxWorkers)
}

// Drain replaces every worker of a lane, one by one (admin API, lanectl).
func (s *Supervisor) Drain(name string) (api.DrainResult, error) {
	l := s.state.Load().lane(name)
	if l == nil {
		return api.DrainResult{}, s.noLane(name)
	}
	return l.Drain("drain")
}

// DrainAll drains every lane (SIGUSR2: roll out a new worker binary).
func (s *Supervisor) DrainAll() {
	for _, l := range s.state.Load().lanes {
		_, _ = l.Drain("SIGUSR2")
	}
}

// Step adds one worker to the default lane (+1) or takes one away (-1):
// SIGTTIN and SIGTTOU. It moves min_workers, and max_workers with it where
// needed; never below 1.
func (s *Supervisor) Step(delta int) {
	l := s.state.Load().lane(config.DefaultLaneName)
	c := l.Config()
	lo, hi := max(c.MinWorkers+delta, 1), c.MaxWorkers
	if delta > 0 {
		hi = max(hi, lo)
	} else if c.MaxWorkers == c.MinWorkers {
		hi = lo // a fixed-size lane stays fixed-size
	}
	if _, err := l.Resize(&lo, &hi); err != nil {
		s.log.Warn("resize by signal refused", "error", err)
		return
	}
	removed := delta < 0 && l.ShrinkOne() // one fewer now, not after idle_timeout
	s.log.Info("resized by signal", "lane", l.Name(), "step", delta, "min_workers", lo, "max_workers", hi, "retired", removed)
}

func (s *Supervisor) noLane(name string) error {
	var names []string
	for _, l := range s.state.Load().lanes {
		names = append(names, l.Name())
	}
	return api.NotFound("no lane %q; lanes are %s", name, strings.Join(names, ", "))
}

// Reload reads the config file again and applies it as a diff, or refuses
// it whole: a config with errors, or one that changes what cannot change
// while running, leaves the running config as it is.
func (s *Supervisor) Reload() (res api.ReloadResult, err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.serving() {
		// systemd: reloading, then ready again whatever the outcome, as
		// the running config stays when a reload is refused.
		s.opt.Notify.Reloading()
		defer func() {
			if s.stopping.Load() {
				return // STOPPING=1 has been sent; no READY=1 after it
			}
			status := s.summary()
			if err != nil {
				status = "reload refused, running config unchanged; " + status
			}
			s.opt.Notify.Ready(status)
		}()
	}
	defer func() {
		rec := &api.ReloadLog{At: time.Now(), OK: err == nil, Changed: res.Changed}
		if err != nil {
			rec.Error = err.Error()
			s.log.Error("reload refused; running config unchanged", "error", err)
			if e, ok := err.(*api.Error); ok {
				for _, d := range e.Diagnostics {
					s.log.Error("reload", "diagnostic", d)
				}
			}
		} else {
			s.log.Info("reloaded", "changes", len(res.Changed))
			for _, c := range res.Changed {
				s.log.Info("reload", "change", c)
			}
		}
		s.lastLoad.Store(rec)
		ev := api.Event{Kind: api.EventReload, Detail: strings.Join(res.Changed, "; ")}
		if err != nil {
			ev.Detail = "refused: " + err.Error()
		} else if ev.Detail == "" {
			ev.Detail = "no changes"
		}
		s.events.add(ev)
	}()
	old := s.state.Load()
	file := old.cfg.File
	cfg, diags := config.Load(file)
	if diags.HasErrors() || cfg == nil {
		e := &api.Error{Code: http.StatusUnprocessableEntity, Msg: "config " + file + " has errors; running config unchanged"}
		for _, d := range diags {
			if d.Severity == hcl.DiagError {
				e.Diagnostics = append(e.Diagnostics, d.Error())
			}
		}
		return api.ReloadResult{}, e
	}
	if why := fixedChanges(old.cfg, cfg); len(why) > 0 {
		return api.ReloadResult{}, api.Conflict("reload refused, running config unchanged: %s cannot change while lanesd runs; restart it to apply", strings.Join(why, ", "))
	}

	have := old.byName()
	byName, made := s.lanesOf(cfg, have)
	// New lanes start before anything changes: one that cannot start
	// refuses the reload.
	if err := startAll(context.Background(), made); err != nil {
		return api.ReloadResult{}, api.Errorf(http.StatusUnprocessableEntity, "reload refused, running config unchanged: %v", err)
	}
	var changes []string
	for _, l := range made {
		changes = append(changes, "lane "+l.Name()+": added")
	}
	// The one swap: the new config, its lanes and the table compiled for
	// them, stored while the mappings are locked, so that no runtime or
	// learned change publishes a table between the table and the lanes.
	mchanges, err := s.maps.Reconfigure(mappingConfig(cfg), func(tbl *mapping.Table) {
		s.state.Store(newState(cfg, s.access, byName, tbl))
	})
	if err != nil {
		stopAll(context.Background(), made, true)
		return api.ReloadResult{}, api.Errorf(http.StatusUnprocessableEntity, "reload refused, running config unchanged: %v", err)
	}
	changes = append(changes, mchanges...)
	env := s.laneEnv(cfg)
	for _, lc := range cfg.Lanes {
		if l := have[lc.Name]; l != nil && byName[lc.Name] == l {
			changes = append(changes, l.Reconfigure(lc, env)...)
		}
	}
	for _, l := range old.lanes {
		if byName[l.Name()] != l {
			changes = append(changes, "lane "+l.Name()+": removed; draining")
			s.retiring.add(l)
		}
	}
	if old.cfg.Log.AccessLog != cfg.Log.AccessLog {
		changes = append(changes, fmt.Sprintf("log: access_log %v -> %v", old.cfg.Log.AccessLog, cfg.Log.AccessLog))
	}
	if old.cfg.Log.AccessFormat != cfg.Log.AccessFormat {
		changes = append(changes, fmt.Sprintf("log: access_format %s -> %s", old.cfg.Log.AccessFormat, cfg.Log.AccessFormat))
	}
	if old.cfg.Log.AccessQuery != cfg.Log.AccessQuery {
		changes = append(changes, fmt.Sprintf("log: access_log_query %v -> %v", old.cfg.Log.AccessQuery, cfg.Log.AccessQuery))
	}
	if old.cfg.Log.Level != cfg.Log.Level {
		s.log.SetLevel(cfg.Log.Level)
		changes = append(changes, fmt.Sprintf("log: level %s -> %s", old.cfg.Log.Level, cfg.Log.Level))
	}
	if old.cfg.DebugHeaders != cfg.DebugHeaders {
		changes = append(changes, fmt.Sprintf("debug_headers %v -> %v", old.cfg.DebugHeaders, cfg.DebugHeaders))
	}
	if old.cfg.ShutdownTimeout != cfg.ShutdownTimeout {
		changes = append(changes, fmt.Sprintf("shutdown_timeout %s -> %s", old.cfg.ShutdownTimeout, cfg.ShutdownTimeout))
	}
	if changes == nil {
		changes = []string{}
	}
	return api.ReloadResult{Config: file, Changed: changes}, nil
}

// themeValues is themes without their source positions, which move when
// lines are added above them.
func themeValues(themes []config.Theme) []config.Theme {
	out := slices.Clone(themes)
	for i := range out {
		out[i].Range, out[i].URLRange = hcl.Range{}, hcl.Range{}
	}
	return out
}

// fixedChanges lists what differs between a and b that lanesd cannot apply
// while it runs: the listeners and the front's client limits.
func fixedChanges(a, b *config.Config) []string {
	var why []string
	if a.Listen != b.Listen {
		why = append(why, fmt.Sprintf("listen (%s -> %s)", a.Listen, b.Listen))
	}
	if a.Admin.Listen != b.Admin.Listen {
		why = append(why, fmt.Sprintf("admin.listen (%s -> %s)", a.Admin.Listen, b.Admin.Listen))
	}
	if a.Admin.Token != b.Admin.Token || a.Admin.MaxConns != b.Admin.MaxConns {
		why = append(why, "the admin block")
	}
	if a.Front != b.Front {
		why = append(why, "the front block")
	}
	// A direct lane's upstream client is made when the lane starts.
	if a.App.Direct != b.App.Direct || (a.App.Direct && a.App.Upstream != b.App.Upstream) {
		why = append(why, "app.direct or its upstream")
	}
	if (a.Fetchd == nil) != (b.Fetchd == nil) || (a.Fetchd != nil && *a.Fetchd != *b.Fetchd) {
		why = append(why, "the fetchd block")
	}
	if a.StateDir != b.StateDir {
		why = append(why, fmt.Sprintf("state_dir (%s -> %s)", a.StateDir, b.StateDir))
	}
	if a.App.Theme != b.App.Theme || !reflect.DeepEqual(themeValues(a.Themes), themeValues(b.Themes)) {
		why = append(why, "the themes (fetchd reads them at start)")
	}
	return why
}
