package fetchd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
)

// Settings is fetchd's configuration: the fetchd block and the themes. The
// supervisor hands them to Main as shared.FetchdSettings.
type Settings struct {
	Fetchd config.Fetchd
	Themes []config.Theme
}

// Options are the Service's seams; zero values are the production ones.
type Options struct {
	Log hclog.Logger
	Now func() time.Time
	// BackoffBase and BackoffMax bound how often a failing origin is asked:
	// after n failures in a row it is left alone for BackoffBase·2^(n-1),
	// at most BackoffMax (defaults 1s and 1m).
	BackoffBase time.Duration
	BackoffMax  time.Duration
}

// Service answers theme lookups from the cache and keeps the cache current:
// single-flight fetches on a pool of Fetchd.Workers goroutines,
// stale-while-revalidate, and backoff for failing origins. It implements
// shared.ThemeService and shared.StatusService.
type Service struct {
	log         hclog.Logger
	set         config.Fetchd
	cache       *Cache
	origin      *origin
	now         func() time.Time
	backoffBase time.Duration
	backoffMax  time.Duration

	themes map[string]*theme
	order  []*theme // config order, for Status

	jobs     chan *theme // at most one per theme: never blocks
	ctx      context.Context
	cancel   context.CancelFunc
	pool     sync.WaitGroup
	stopping atomic.Bool
	fetching atomic.Int64
	served   atomic.Uint64
}

// theme is one theme's state. mu guards everything but the counters.
type theme struct {
	cfg config.Theme
	log hclog.Logger

	mu      sync.Mutex
	entry   *Entry        // last good copy; nil: none
	flight  chan struct{} // closed when the queued or running fetch ends; nil: none
	flewAt  time.Time     // when flight was queued
	fails   int           // failed fetches in a row
	retryAt time.Time     // backoff: no fetch before
	failing bool          // origin state, for logging its changes once
	lastErr string
	shown   string // state last served, for logging its changes once

	fetches, notModified, failures, rejected, staleServes, unthemedServes atomic.Uint64
}

// NewService loads the themes' copies from cache and starts the fetch pool.
// Close stops it; the cache stays the caller's.
func NewService(cache *Cache, set Settings, o Options) (*Service, error) {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = time.Minute
	}
	s := &Service{
		log:         o.Log,
		set:         set.Fetchd,
		cache:       cache,
		origin:      newOrigin(),
		now:         o.Now,
		backoffBase: o.BackoffBase,
		backoffMax:  o.BackoffMax,
		themes:      make(map[string]*theme, len(set.Themes)),
		jobs:        make(chan *theme, len(set.Themes)),
	}
	for _, tc := range set.Themes {
		t := &theme{cfg: tc, log: o.Log.With("theme", tc.Name)}
		e, ok, err := cache.Load(tc.Name)
		if err != nil {
			return nil, err
		}
		if ok && e.URL == tc.URL { // a copy of another url is void
			t.entry = &e
		}
		s.themes[tc.Name] = t
		s.order = append(s.order, t)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for range max(1, s.set.Workers) {
		s.pool.Go(s.fetchLoop)
	}
	return s, nil
}

// Prefetch queues a fetch for every theme without a fresh copy, so the
// first request after a start rarely waits.
func (s *Service) Prefetch() {
	now := s.now()
	for _, t := range s.order {
		t.mu.Lock()
		if st, _ := s.stateLocked(t, now); st != shared.ThemeFresh {
			s.startLocked(t, now)
		}
		t.mu.Unlock()
	}
}

// Theme implements shared.ThemeService.
func (s *Service) Theme(ctx context.Context, name, have string) (shared.ThemeDoc, error) {
	t := s.themes[name]
	if t == nil {
		return shared.ThemeDoc{}, fmt.Errorf("%w %q", shared.ErrUnknownTheme, name)
	}
	now := s.now()
	t.mu.Lock()
	st, e := s.stateLocked(t, now)
	var wait chan struct{}
	var limit time.Duration
	switch st {
	case shared.ThemeFresh:
	case shared.ThemeStale:
		// stale_wait counts from the refresh's start, not from each ask:
		// once a refresh has taken stale_wait, it is slow, and the askers
		// after it get the stale copy without waiting (a hung origin would
		// otherwise add stale_wait to every request for fetch_timeout).
		wait = s.startLocked(t, now)
		limit = min(s.set.StaleWait, s.set.StaleWait-now.Sub(t.flewAt))
	default: // no usable copy: this request waits for one
		wait, limit = s.startLocked(t, now), s.set.FetchTimeout
	}
	t.mu.Unlock()

	if wait != nil && limit > 0 {
		timer := time.NewTimer(limit)
		select {
		case <-wait:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		t.mu.Lock()
		st, e = s.stateLocked(t, s.now())
		t.mu.Unlock()
		if st == shared.ThemeStale && !e.Fetched.Before(now) {
			st = shared.ThemeFresh // fetched for this very ask (min_refresh 0)
		}
	}
	return s.answer(t, st, e, have), nil
}

// stateLocked classifies t's copy at now: fresh, stale, unthemed (none) or
// expired (older than max_stale), and returns a snapshot of it.
func (s *Service) stateLocked(t *theme, now time.Time) (string, Entry) {
	if t.entry == nil {
		return shared.ThemeUnthemed, Entry{}
	}
	e := *t.entry
	age := now.Sub(e.Fetched)
	switch {
	case age < s.freshFor(e):
		return shared.ThemeFresh, e
	case s.set.MaxStale > 0 && age > s.set.MaxStale:
		return stateExpired, e
	}
	return shared.ThemeStale, e
}

// freshFor is how long after its fetch copy e is fresh: fetchd fetches it
// again only after that.
func (s *Service) freshFor(e Entry) time.Duration { return max(s.set.MinRefresh, e.MaxAge) }

// stateExpired is a copy too old to serve; callers see ThemeUnthemed.
const stateExpired = "expired"

// startLocked queues a fetch of t unless one is queued or running already
// (then it returns that one), the origin is in backoff, or the service is
// stopping (then nil). The channel closes when the fetch ends.
func (s *Service) startLocked(t *theme, now time.Time) chan struct{} {
	if t.flight != nil {
		return t.flight
	}
	if now.Before(t.retryAt) || s.stopping.Load() {
		return nil
	}
	t.flight, t.flewAt = make(chan struct{}), now
	s.jobs <- t // capacity is one per theme
	return t.flight
}

// answer builds the reply for state st of copy e, reading the HTML from the
// cache unless the caller already has version e.Version.
func (s *Service) answer(t *theme, st string, e Entry, have string) shared.ThemeDoc {
	s.served.Add(1)
	doc := shared.ThemeDoc{Name: t.cfg.Name, State: st}
	if st == shared.ThemeFresh || st == shared.ThemeStale {
		doc.Version, doc.Fetched = e.Version, e.Fetched
		if st == shared.ThemeFresh {
			doc.FreshUntil = e.Fetched.Add(s.freshFor(e))
		}
		if have != e.Version {
			v, html, ok, err := s.cache.HTML(t.cfg.Name)
			if err != nil || !ok {
				t.log.Error("cached copy unreadable; serving unthemed", "error", err)
				doc = shared.ThemeDoc{Name: t.cfg.Name, State: shared.ThemeUnthemed}
				st = shared.ThemeUnthemed
			} else {
				doc.Version, doc.HTML = v, html // v is newer than e if a fetch just landed
			}
		}
	}
	switch st {
	case shared.ThemeStale:
		t.staleServes.Add(1)
	case shared.ThemeUnthemed, stateExpired:
		t.unthemedServes.Add(1)
		doc.State = shared.ThemeUnthemed
	}
	s.noteShown(t, st)
	return doc
}

// noteShown logs once when a theme starts or stops being served unthemed.
func (s *Service) noteShown(t *theme, st string) {
	usable := st == shared.ThemeFresh || st == shared.ThemeStale
	t.mu.Lock()
	prev := t.shown
	t.shown = st
	lastErr := t.lastErr
	t.mu.Unlock()
	wasUsable := prev == shared.ThemeFresh || prev == shared.ThemeStale
	switch {
	case prev == st || (usable && wasUsable):
	case usable && prev == "":
		// The first answer since start: nothing came "again".
	case usable:
		t.log.Info("theme available again; serving it", "state", st)
	case st == stateExpired:
		t.log.Warn("cached theme is older than max_stale; serving unthemed", "max_stale", s.set.MaxStale.String(), "last_error", lastErr)
	default:
		t.log.Warn("no copy of the theme; serving unthemed", "url", t.cfg.URL, "last_error", lastErr)
	}
}

func (s *Service) fetchLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case t := <-s.jobs:
			s.refresh(t)
		}
	}
}

// refresh fetches t's origin once and settles the result: a usable page or
// a 304 becomes the copy; anything else leaves the last good copy and backs
// the origin off.
func (s *Service) refresh(t *theme) {
	s.fetching.Add(1)
	defer s.fetching.Add(-1)
	t.mu.Lock()
	var prev *Entry
	if t.entry != nil {
		e := *t.entry
		prev = &e
	}
	t.mu.Unlock()

	t.fetches.Add(1)
	ctx, cancel := context.WithTimeout(s.ctx, s.set.FetchTimeout)
	resp, err := s.origin.fetch(ctx, t.cfg.URL, prev)
	cancel()
	var next Entry
	if err == nil {
		next, err = s.store(t, prev, resp)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	defer func() { close(t.flight); t.flight = nil }()
	if s.ctx.Err() != nil {
		return // stopping: a cancelled fetch says nothing about the origin
	}
	now := s.now()
	if err != nil {
		if errors.Is(err, errRejected) {
			t.rejected.Add(1)
		} else {
			t.failures.Add(1)
		}
		t.fails++
		delay := min(s.backoffBase<<min(t.fails-1, 16), s.backoffMax)
		t.retryAt = now.Add(delay)
		t.lastErr = err.Error()
		if !t.failing {
			t.failing = true
			msg := "theme origin failing; keeping the last good copy"
			if errors.Is(err, errRejected) {
				msg = "fetched theme page refused; keeping the last good copy"
			}
			t.log.Warn(msg, "url", t.cfg.URL, "error", err,
				"has_copy", t.entry != nil, "retry_in", delay.String())
		} else {
			t.log.Debug("theme origin still failing", "error", err, "retry_in", delay.String())
		}
		return
	}
	t.entry = &next
	t.fails, t.retryAt, t.lastErr = 0, time.Time{}, ""
	if t.failing {
		t.failing = false
		t.log.Info("theme origin answers again", "url", t.cfg.URL, "version", next.Version)
	}
}

// store writes a fetch's outcome to the cache and returns the new copy.
func (s *Service) store(t *theme, prev *Entry, r response) (Entry, error) {
	now := s.now()
	if r.Status == http.StatusNotModified {
		t.notModified.Add(1)
		e := *prev
		e.Fetched = now
		if r.ETag != "" {
			e.ETag = r.ETag
		}
		if r.LastModified != "" {
			e.LastModified = r.LastModified
		}
		e.MaxAge = r.MaxAge
		return e, s.cache.Touch(t.cfg.Name, e)
	}
	if err := usable(r.Body, t.cfg.Rules); err != nil {
		return Entry{}, err
	}
	e := Entry{
		URL:          t.cfg.URL,
		Version:      version(r.Body),
		Fetched:      now,
		ETag:         r.ETag,
		LastModified: r.LastModified,
		MaxAge:       r.MaxAge,
		Size:         len(r.Body),
	}
	if prev != nil && prev.Version == e.Version {
		return e, s.cache.Touch(t.cfg.Name, e)
	}
	return e, s.cache.Put(t.cfg.Name, e, r.Body)
}

// Status implements shared.StatusService.
func (s *Service) Status(context.Context) (shared.FetchdStatus, error) {
	st := shared.FetchdStatus{
		PID:      os.Getpid(),
		RSS:      shared.SelfRSS(),
		Fetching: int(s.fetching.Load()),
		Queued:   len(s.jobs),
		Themes:   s.Themes(),
	}
	n, size, err := s.cache.Stats()
	if err != nil {
		st.LastError = err.Error()
	}
	st.CacheEntries, st.CacheBytes = n, size
	return st, nil
}

// Themes reports every theme's state and counters.
func (s *Service) Themes() []api.Theme {
	now := s.now()
	out := make([]api.Theme, 0, len(s.order))
	for _, t := range s.order {
		t.mu.Lock()
		state, e := s.stateLocked(t, now)
		lastErr := t.lastErr
		t.mu.Unlock()
		at := api.Theme{
			Name:           t.cfg.Name,
			URL:            t.cfg.URL,
			State:          state,
			Version:        e.Version,
			LastError:      lastErr,
			MaxStaleS:      s.set.MaxStale.Seconds(),
			Fetches:        t.fetches.Load(),
			NotModified:    t.notModified.Load(),
			Failures:       t.failures.Load(),
			Rejected:       t.rejected.Load(),
			StaleServes:    t.staleServes.Load(),
			UnthemedServes: t.unthemedServes.Load(),
		}
		if !e.Fetched.IsZero() {
			f := e.Fetched
			at.LastFetch = &f
			at.AgeS = now.Sub(f).Seconds()
		}
		out = append(out, at)
	}
	return out
}

// Close stops the fetch pool: running fetches are cancelled, queued ones
// dropped, and no new ones start. Lookups still answer from the cache. It
// returns when the pool has stopped or ctx ends, and is safe to call twice.
func (s *Service) Close(ctx context.Context) error {
	s.stopping.Store(true)
	s.cancel()
	done := make(chan struct{})
	go func() { s.pool.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("fetchd: stop fetch pool: %w", ctx.Err())
	}
	for {
		select {
		case t := <-s.jobs:
			t.mu.Lock()
			close(t.flight)
			t.flight = nil
			t.mu.Unlock()
		default:
			return nil
		}
	}
}

// Health implements shared.Control for the supervisor's health checks.
func (s *Service) Health(context.Context) (shared.WorkerStats, error) {
	if err := s.cache.Err(); err != nil {
		return shared.WorkerStats{}, err
	}
	return shared.WorkerStats{
		PID:        os.Getpid(),
		Inflight:   s.fetching.Load(),
		Served:     s.served.Load(),
		RSS:        shared.SelfRSS(),
		Goroutines: runtime.NumGoroutine(),
		Draining:   s.stopping.Load(),
	}, nil
}

// Drain implements shared.Control: fetches stop (the supervisor is about
// to kill fetchd), lookups keep answering from the cache until then.
func (s *Service) Drain(ctx context.Context) error { return s.Close(ctx) }

// Interface guards.
var (
	_ shared.FetchdService = (*Service)(nil)
	_ shared.Control       = (*Service)(nil)
)
