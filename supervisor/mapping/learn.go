package mapping

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/shared/logging"
)

// maxLearnedPath bounds the path of a learned mapping, so max_entries bounds
// memory too; longer paths are not learned.
const maxLearnedPath = 1024

// Observe is the trace of one finished request: lane is the name of the
// lane it ran in, filterRun its filter+run time (never its queue time: queueing is
// caused by other requests, and counting it would move everything),
// timedOut whether it hit the lane's hard timeout, ref what Match returned.
// The auto_map settings are t's; the mapping learned goes into t's Set.
//
// A request that ran in one of auto_map's from lanes and took longer than
// the threshold, or timed out, has its exact "METHOD path" mapped to the
// auto_map lane, once. A request matched by a learned mapping marks it as
// still slow when it took at least half the threshold (hysteresis: see
// Sweep). A request matched by a runtime (api) mapping is never learned: an
// operator chose its lane.
//
// The common case, a request that is fast or not learned, takes no lock and
// allocates nothing. Learning locks and allocates.
func (t *Table) Observe(ref Ref, lane string, method, path []byte, filterRun time.Duration, timedOut bool) {
	a := t.auto
	if a == nil {
		return
	}
	if e := ref.e; e != nil && e.src != srcConfig {
		if e.src == srcLearned && (timedOut || filterRun >= a.half) {
			e.lastSlow.Store(t.set.now().UnixNano())
		}
		return
	}
	if !timedOut && filterRun <= a.threshold {
		return
	}
	if !slices.Contains(a.from, lane) {
		return
	}
	t.set.learn(method, path, filterRun, timedOut)
}

// Observe is Table().Observe.
func (s *Set) Observe(ref Ref, lane string, method, path []byte, filterRun time.Duration, timedOut bool) {
	s.Table().Observe(ref, lane, method, path, filterRun, timedOut)
}

func (s *Set) learn(method, path []byte, filterRun time.Duration, timedOut bool) {
	if len(path) > maxLearnedPath {
		s.log.Debug("auto_map: path too long to learn", "method", string(method), "length", len(path))
		return
	}
	// Learn only what the admin API could name, so every learned mapping
	// can be removed: no "*" (it would become a glob), no "?", "#" or
	// blanks, an uppercase method.
	if strings.ContainsRune(string(path), '*') {
		s.log.Debug("auto_map: not learning a path with \"*\"", "method", string(method), "path", string(path))
		return
	}
	p, err := config.ParsePattern(string(method) + " " + string(path))
	if err != nil || p.Method != string(method) || p.Path != string(path) {
		s.log.Debug("auto_map: not learning a request that is not a valid pattern", "method", string(method), "path", string(path))
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.cur.Load().auto // again under the lock: a reload may have changed it
	if a == nil {
		return
	}
	k := key{p.Method, p.Path}
	if _, ok := s.dyn[k]; ok {
		return // learned already (maybe not compiled yet), or an operator's mapping
	}
	e := newEntry(a.cfg.Lane, p.Method, p.Path, srcLearned, s.now())
	e.lastSlow.Store(e.addedNS)
	s.setDynLocked(k, e)
	s.learned++
	s.nLearned.Add(1)
	s.log.Info("auto_map: learned mapping", "pattern", e.pattern, "lane", e.lane,
		"filter_run", logging.Dur(filterRun), "timed_out", timedOut, "threshold", logging.Dur(a.threshold))
	if s.event != nil {
		why := fmt.Sprintf("filter+run %s over threshold %s", filterRun.Round(time.Millisecond), a.threshold)
		if timedOut {
			why = "hit request_timeout"
		}
		s.event(api.EventLearned, e.lane, p.Method, p.Path, why)
	}
	if s.learned > a.cfg.MaxEntries && !s.full {
		s.full = true
		s.log.Warn("auto_map: max_entries reached; evicting the least recently hit learned mappings", "max_entries", a.cfg.MaxEntries)
	}
	for s.learned > a.cfg.MaxEntries {
		s.evictOneLocked(a)
	}
	s.nEntries.Store(int64(s.learned))
	s.learnedChangedLocked()
	s.changedLocked()
}

// victim is an eviction candidate: a learned entry and its recency when the
// candidate list was made.
type victim struct {
	k  key
	e  *entry
	at int64
}

// evictOneLocked removes the least recently used learned mapping.
//
// Finding the minimum by scanning every entry per eviction would make a
// flood O(N * max_entries). Instead the coldest eighth is sorted once into
// s.victims and consumed in order. That stays exact LRU: recency only grows,
// an entry outside the list was at least as recent as every listed one when
// the list was made, and one learned since is more recent still; a listed
// entry whose recency changed since (it was hit) is skipped, not evicted,
// and goes back into the pool for the next list. Amortised cost per
// eviction: O(8 log N).
//
// Hits race with this (Match takes no lock), so a list made in this very
// call is trusted as it is: skipping its entries for hits landing between
// the sort and now could, in theory, go on forever.
func (s *Set) evictOneLocked(a *learner) {
	fresh := false
	for {
		if len(s.victims) == 0 {
			if s.learned == 0 {
				return
			}
			s.fillVictimsLocked(max(16, a.cfg.MaxEntries/8))
			fresh = true
		}
		v := s.victims[0]
		s.victims = s.victims[1:]
		if s.dyn[v.k] != v.e || (!fresh && v.e.recency() != v.at) {
			continue // gone, replaced or hit since
		}
		s.delDynLocked(v.k)
		s.learned--
		s.nEvicted.Add(1)
		s.log.Debug("auto_map: evicted learned mapping", "pattern", v.e.pattern, "hits", v.e.hits.Load())
		return
	}
}

func (s *Set) fillVictimsLocked(n int) {
	all := make([]victim, 0, s.learned)
	for k, e := range s.dyn {
		if e.src == srcLearned {
			all = append(all, victim{k, e, e.recency()})
		}
	}
	slices.SortFunc(all, func(a, b victim) int {
		if a.at != b.at {
			if a.at < b.at {
				return -1
			}
			return 1
		}
		return strings.Compare(a.e.pattern, b.e.pattern)
	})
	s.victims = slices.Clone(all[:min(n, len(all))])
}

// Sweep forgets learned mappings, as of now: those not hit for forget_after,
// and those whose requests have not been slow (at least half the threshold)
// for forget_after. The time since learning counts as slow, so a mapping
// gets forget_after to prove itself. It recompiles once if it forgot any.
func (s *Set) Sweep(now time.Time) {
	if s.cur.Load().auto == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.cur.Load().auto
	if a == nil {
		return
	}
	fa, ns := int64(a.cfg.ForgetAfter), now.UnixNano()
	forgot := 0
	for k, e := range s.dyn {
		if e.src != srcLearned {
			continue
		}
		var why string
		switch {
		case ns-e.recency() > fa:
			why = "not hit"
		case ns-e.lastSlow.Load() > fa:
			why = "not slow"
		default:
			continue
		}
		s.delDynLocked(k)
		s.learned--
		forgot++
		s.nForgotten.Add(1)
		s.log.Info("auto_map: forgot learned mapping", "pattern", e.pattern, "lane", e.lane,
			"reason", why+" for "+a.cfg.ForgetAfter.String(), "hits", e.hits.Load())
		if s.event != nil {
			s.event(api.EventForgotten, e.lane, k.method, k.path, why+" for "+a.cfg.ForgetAfter.String())
		}
	}
	if forgot > 0 {
		if s.learned <= a.cfg.MaxEntries {
			s.full = false
		}
		s.nEntries.Store(int64(s.learned))
		s.compileLocked()
		s.changedLocked()
	}
}

// Run sweeps every forget_after/10 (between 1s and 30s), and saves
// changes to the state file (state.go), until ctx ends; it returns once the
// last changes are saved.
func (s *Set) Run(ctx context.Context) {
	if s.store != nil {
		saved := make(chan struct{})
		go func() { defer close(saved); s.saveLoop(ctx) }()
		defer func() { <-saved }()
	}
	for {
		t := time.NewTimer(s.sweepEvery())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.Sweep(s.now())
	}
}

func (s *Set) sweepEvery() time.Duration {
	a := s.cur.Load().auto
	if a == nil {
		return 30 * time.Second
	}
	return min(max(a.cfg.ForgetAfter/10, time.Second), 30*time.Second)
}

// AutoMapStatus is the learner's settings and counters; nil when auto_map
// is off.
func (s *Set) AutoMapStatus() *api.AutoMap {
	a := s.cur.Load().auto
	if a == nil {
		return nil
	}
	learned, forgotten, evicted, entries := s.Counters()
	return &api.AutoMap{
		Lane:        a.cfg.Lane,
		From:        slices.Clone(a.cfg.From),
		Threshold:   a.cfg.Threshold.String(),
		ForgetAfter: a.cfg.ForgetAfter.String(),
		MaxEntries:  a.cfg.MaxEntries,
		Entries:     entries,
		Learned:     learned,
		Forgotten:   forgotten,
		Evicted:     evicted,
	}
}

// Counters are the learner's totals since New, and the learned mappings
// held now. Lock-free, for Prometheus.
func (s *Set) Counters() (learned, forgotten, evicted uint64, entries int) {
	return s.nLearned.Load(), s.nForgotten.Load(), s.nEvicted.Load(), int(s.nEntries.Load())
}
