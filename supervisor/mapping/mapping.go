// Package mapping owns which lane a request goes to at runtime: the static
// mappings of the config file, the runtime mappings of the admin API
// (POST/DELETE /api/map), the mappings auto_map learns from slow requests,
// their hit statistics, the compiled router table built from all of them,
// and the state file that keeps runtime and learned mappings across
// restarts (state.go).
//
// A compiled Table is immutable, and the Set does not decide which one
// requests use: it hands each new table to its caller (Config.Publish, the
// commit function of Reconfigure), who stores it together with what must
// change with it — the lanes its indices refer to — in one atomic store.
// Table.Match is lock-free. Statistics live in one struct per mapping,
// referenced by pointer from every table compiled while the mapping exists,
// so they survive recompiles.
package mapping

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/supervisor/router"
)

// Config is what a Set is built from; New and Reconfigure take one.
type Config struct {
	// Lanes are the lane names in order; Table.Match returns an index into
	// them (Table.Lanes). One must be config.DefaultLaneName ("default").
	Lanes []string
	// Static maps a lane name to its config `map` patterns.
	Static map[string][]config.Pattern
	// AutoMap configures learning; nil turns it off.
	AutoMap *config.AutoMap
	// Now is the clock for hit, learn and added times; nil means time.Now.
	// Only New reads it: a Set keeps its clock across Reconfigure.
	Now func() time.Time
	// Publish receives every table compiled after New's by a runtime or
	// learned change (Add, Remove, learning, Sweep), in order, with the
	// Set's lock held: it must not call the Set. nil drops them (Set.Match
	// still sees them). Only New reads it.
	Publish func(*Table)
	// Event, when set, is told of every mapping learned or forgotten
	// (kind api.EventLearned or api.EventForgotten), with the Set's lock
	// held: it must not call the Set. Only New reads it.
	Event func(kind, lane, method, path, detail string)
	// MaxRuntime caps the runtime (admin API) mappings held; past it Add
	// refuses. 0 means DefaultMaxRuntime. Only New reads it.
	MaxRuntime int
	// StateFile is where runtime and learned mappings are saved, so that
	// they survive a restart (see state.go); "" keeps them in memory only.
	// Only New reads it.
	StateFile string
}

// DefaultMaxRuntime is the default cap on runtime mappings. Learned ones
// have their own, auto_map's max_entries.
const DefaultMaxRuntime = 10_000

// Ref identifies the mapping a request matched, from Match to Observe. The
// zero Ref means no mapping matched and the default lane took the request.
type Ref struct{ e *entry }

// IsZero reports whether no mapping matched.
func (r Ref) IsZero() bool { return r.e == nil }

// Pattern is the matched mapping's "METHOD PATH", or "" for the zero Ref.
func (r Ref) Pattern() string {
	if r.e == nil {
		return ""
	}
	return r.e.pattern
}

// Source is api.SourceConfig, api.SourceAPI or api.SourceAutoMap, or "".
func (r Ref) Source() string {
	if r.e == nil {
		return ""
	}
	return r.e.src.String()
}

type source uint8

const (
	srcConfig source = iota
	srcAPI
	srcLearned
)

func (s source) String() string {
	switch s {
	case srcAPI:
		return api.SourceAPI
	case srcLearned:
		return api.SourceAutoMap
	}
	return api.SourceConfig
}

// entry is one mapping. Its identity fields never change; a mapping that
// changes lane or source is a new entry. The atomics are its statistics,
// written on the hot path.
type entry struct {
	hits     atomic.Uint64
	lastHit  atomic.Int64 // unix ns of the last hit, to hitGrain; 0: never
	lastSlow atomic.Int64 // learned only: unix ns of the last request >= threshold/2; starts at learn time

	lane    string
	method  string
	path    string
	pattern string // method + " " + path, built once so Ref.Pattern does not allocate
	src     source
	added   time.Time
	addedNS int64
}

// hitGrain is how precise last-hit times are: a hit stores the time only
// when it moved by at least this much, so hits on a busy mapping do not all
// write the same word.
const hitGrain = int64(time.Millisecond)

func (e *entry) hit(now int64) {
	e.hits.Add(1)
	if now-e.lastHit.Load() >= hitGrain {
		e.lastHit.Store(now)
	}
}

// recency is when the mapping was last used: its last hit, or when it was
// added if it was never hit. Eviction and forgetting order by it.
func (e *entry) recency() int64 { return max(e.lastHit.Load(), e.addedNS) }

func (e *entry) mapping() api.Mapping {
	m := api.Mapping{
		Lane:    e.lane,
		Method:  e.method,
		Pattern: e.path,
		Dynamic: e.src != srcConfig,
		Source:  e.src.String(),
		Hits:    e.hits.Load(),
		Added:   e.added,
	}
	if ns := e.lastHit.Load(); ns != 0 {
		t := time.Unix(0, ns)
		m.LastHit = &t
	}
	return m
}

// key identifies a dynamic mapping: one per method and pattern.
type key struct{ method, path string }

// Table is one compiled routing table: the mappings of one moment, the lane
// list its indices refer to, and auto_map's settings. It never changes; a
// change of mappings makes a new one.
type Table struct {
	set   *Set
	exact exactIndex    // dynamic exact paths (exact.go)
	rt    *router.Table // static mappings and dynamic globs
	refs  []*entry      // by route index in rt
	lanes []string      // what Match's lane indices refer to
	auto  *learner      // nil: auto_map off
}

// learner is auto_map's settings. It names lanes, never indexes them: a
// request is traced with the lane it ran in, which a reload may have
// removed or moved since it was matched.
type learner struct {
	cfg       config.AutoMap
	from      []string // the lanes it learns from
	threshold time.Duration
	half      time.Duration // requests at least this slow keep a learned mapping alive
}

// Set is the live set of mappings. Its methods are safe for concurrent use.
type Set struct {
	log     hclog.Logger
	clock   func() time.Time
	publish func(*Table)
	event   func(kind, lane, method, path, detail string) // nil: none

	cur atomic.Pointer[Table] // the latest table, as published

	nLearned, nForgotten, nEvicted atomic.Uint64
	nEntries                       atomic.Int64

	mu      sync.Mutex
	lanes   []string
	laneIdx map[string]int
	def     int
	static  []*entry
	dyn     map[key]*entry // runtime and learned
	learned int            // learned entries in dyn
	runtime int            // runtime entries in dyn
	maxRT   int            // cap on runtime
	// The next table's parts: ex and exOwned (shards copied since the
	// last publish, which may be written in place), and globs, the dynamic
	// glob mappings, which go to the router; routerDirty says they changed.
	ex          exactIndex
	exOwned     [exactShards]bool
	globs       map[key]*entry
	routerDirty bool
	store       *store   // nil: no state file
	gen         uint64   // runtime and learned changes, for the saver
	victims     []victim // eviction candidates, coldest first (see evictOneLocked)
	full        bool     // at max_entries; logged once per episode
	pace        pacer
	dirty       bool // learned changes not compiled yet
	timerSet    bool
	compiles    int // recompiles since New, for tests of pacing
}

// New builds a Set. It fails, with an *api.Error, on a lane list without
// "default", a static or auto_map lane that is not in it, or a pattern the
// router refuses.
func New(c Config, log hclog.Logger) (*Set, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Set{log: log.Named("map"), clock: c.Now, publish: c.Publish, event: c.Event, dyn: make(map[key]*entry), maxRT: c.MaxRuntime}
	if s.maxRT <= 0 {
		s.maxRT = DefaultMaxRuntime
	}
	p, err := s.prepare(c)
	if err != nil {
		return nil, err
	}
	dyn := s.dyn
	if c.StateFile != "" {
		s.store = newStore(c.StateFile, s.log)
		dyn = s.load(p)
	}
	t, err := s.build(p, dyn)
	if err != nil {
		return nil, err
	}
	s.commit(p, dyn, t, nil)
	return s, nil
}

// Table returns the latest table: New's, or the last one published.
func (s *Set) Table() *Table { return s.cur.Load() }

func (s *Set) now() time.Time {
	if s.clock == nil {
		return time.Now()
	}
	return s.clock()
}

// Match returns the lane for a request, as an index into t.Lanes(), and
// the mapping that chose it, and counts the hit. method and path are
// fasthttp's ctx.Method() and ctx.Path(), only read during the call.
// Lock-free, allocation-free.
func (t *Table) Match(method, path []byte) (lane int, ref Ref) {
	if t.exact.n > 0 {
		if x, ok := t.exact.match(method, path); ok {
			x.e.hit(t.set.now().UnixNano())
			return x.lane, Ref{x.e}
		}
	}
	lane, ri := t.rt.MatchRoute(method, path)
	if ri < 0 {
		return lane, Ref{}
	}
	e := t.refs[ri]
	e.hit(t.set.now().UnixNano())
	return lane, Ref{e}
}

// Lanes returns the lane names Match indexes into.
func (t *Table) Lanes() []string { return slices.Clone(t.lanes) }

// Match is Table().Match: the latest table's answer. A caller that keeps
// tables beside other state matches with the table it keeps.
func (s *Set) Match(method, path []byte) (lane int, ref Ref) { return s.Table().Match(method, path) }

// Lanes returns the lane names the latest table's Match indexes into.
func (s *Set) Lanes() []string { return s.Table().Lanes() }

// prepared is a Config resolved and validated, not yet applied.
type prepared struct {
	lanes   []string
	laneIdx map[string]int
	def     int
	static  []*entry
	auto    *learner
}

// prepare validates c. It reads nothing of s but the clock.
func (s *Set) prepare(c Config) (*prepared, error) {
	p := &prepared{lanes: slices.Clone(c.Lanes), laneIdx: make(map[string]int, len(c.Lanes)), def: -1}
	for i, name := range c.Lanes {
		if _, dup := p.laneIdx[name]; dup {
			return nil, api.BadRequest("map: lane %q is listed twice", name)
		}
		p.laneIdx[name] = i
		if name == config.DefaultLaneName {
			p.def = i
		}
	}
	if p.def < 0 {
		return nil, api.BadRequest("map: no lane named %q", config.DefaultLaneName)
	}
	now := s.now()
	// Static mappings in lane order, then pattern order within a lane as
	// written: the router breaks ties between equally specific globs by
	// position, so the order must not depend on map iteration.
	names := make([]string, 0, len(c.Static))
	for name := range c.Static {
		if _, ok := p.laneIdx[name]; !ok {
			return nil, p.unknownLane(name)
		}
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return p.laneIdx[a] - p.laneIdx[b] })
	for _, name := range names {
		for _, pat := range c.Static[name] {
			p.static = append(p.static, newEntry(name, pat.Method, pat.Path, srcConfig, now))
		}
	}
	if am := c.AutoMap; am != nil {
		l, err := p.learner(am)
		if err != nil {
			return nil, err
		}
		p.auto = l
	}
	return p, nil
}

func (p *prepared) learner(am *config.AutoMap) (*learner, error) {
	if _, ok := p.laneIdx[am.Lane]; !ok {
		return nil, p.unknownLane(am.Lane)
	}
	if am.Threshold <= 0 {
		return nil, api.BadRequest("auto_map: threshold must be positive, not %s", am.Threshold)
	}
	l := &learner{cfg: *am, threshold: am.Threshold, half: am.Threshold / 2}
	l.cfg.From = slices.Clone(am.From)
	if l.cfg.ForgetAfter <= 0 {
		l.cfg.ForgetAfter = config.DefaultAutoMapForgetAfter
	}
	if l.cfg.MaxEntries <= 0 {
		l.cfg.MaxEntries = config.DefaultAutoMapMaxEntries
	}
	if len(am.From) == 0 {
		// No from list: learn from every lane but the one it maps to.
		for _, name := range p.lanes {
			if name != am.Lane {
				l.from = append(l.from, name)
			}
		}
	}
	for _, name := range am.From {
		if _, ok := p.laneIdx[name]; !ok {
			return nil, p.unknownLane(name)
		}
		if !slices.Contains(l.from, name) {
			l.from = append(l.from, name)
		}
	}
	return l, nil
}

func (p *prepared) unknownLane(name string) error {
	return api.NotFound("no lane %q: the lanes are %s", name, strings.Join(p.lanes, ", "))
}

func newEntry(lane, method, path string, src source, now time.Time) *entry {
	return &entry{
		lane:    lane,
		method:  method,
		path:    path,
		pattern: method + " " + path,
		src:     src,
		added:   now,
		addedNS: now.UnixNano(),
	}
}

// build compiles a table of p's static mappings and dyn, from scratch.
func (s *Set) build(p *prepared, dyn map[key]*entry) (*Table, error) {
	var x exactIndex
	var owned [exactShards]bool
	var globs []*entry
	for k, e := range dyn {
		if isGlob(k.path) {
			globs = append(globs, e)
			continue
		}
		x.put(k.path, exactTarget{method: k.method, lane: p.laneIdx[e.lane], e: e}, &owned)
	}
	rt, refs, err := compileRouter(p, globs)
	if err != nil {
		return nil, err
	}
	return &Table{set: s, exact: x, rt: rt, refs: refs, lanes: p.lanes, auto: p.auto}, nil
}

// compileRouter compiles the router table of p's static mappings and the
// dynamic globs.
func compileRouter(p *prepared, globs []*entry) (*router.Table, []*entry, error) {
	routes := make([]router.Route, 0, len(p.static)+len(globs))
	refs := make([]*entry, 0, cap(routes))
	add := func(e *entry) {
		routes = append(routes, router.Route{Method: e.method, Path: e.path, Lane: p.laneIdx[e.lane], Dynamic: e.src != srcConfig})
		refs = append(refs, e)
	}
	for _, e := range p.static {
		add(e)
	}
	// Dynamic globs are ordered, oldest first, so that a tie between
	// equally specific globs does not flip from one compile to the next.
	slices.SortFunc(globs, func(a, b *entry) int {
		if c := a.added.Compare(b.added); c != 0 {
			return c
		}
		return strings.Compare(a.pattern, b.pattern)
	})
	for _, e := range globs {
		add(e)
	}
	rt, err := router.Compile(routes, p.def)
	if err != nil {
		return nil, nil, api.BadRequest("map: %v", err)
	}
	return rt, refs, nil
}

// setDynLocked makes e the dynamic mapping of k in the next table, and
// delDynLocked removes k's; neither counts. An exact path costs one
// shard copy at most; a glob marks the router for recompiling.
func (s *Set) setDynLocked(k key, e *entry) {
	s.dyn[k] = e
	if isGlob(k.path) {
		s.globs[k] = e
		s.routerDirty = true
		return
	}
	s.ex.put(k.path, exactTarget{method: k.method, lane: s.laneIdx[e.lane], e: e}, &s.exOwned)
}

func (s *Set) delDynLocked(k key) {
	delete(s.dyn, k)
	if isGlob(k.path) {
		delete(s.globs, k)
		s.routerDirty = true
		return
	}
	s.ex.del(k.method, k.path, &s.exOwned)
}

// commit makes p, dyn and t the live state and hands t to publish (nil:
// nobody). Called with s.mu held (or before s is shared).
func (s *Set) commit(p *prepared, dyn map[key]*entry, t *Table, publish func(*Table)) {
	s.lanes, s.laneIdx, s.def, s.static = p.lanes, p.laneIdx, p.def, p.static
	s.dyn = dyn
	s.learned, s.runtime = 0, 0
	s.globs = make(map[key]*entry)
	for k, e := range dyn {
		switch e.src {
		case srcLearned:
			s.learned++
		case srcAPI:
			s.runtime++
		}
		if isGlob(k.path) {
			s.globs[k] = e
		}
	}
	s.ex, s.exOwned, s.routerDirty = t.exact, [exactShards]bool{}, false
	s.nEntries.Store(int64(s.learned))
	s.victims = nil
	s.dirty = false
	s.cur.Store(t)
	if publish != nil {
		publish(t)
	}
}

// current returns the live state as a prepared, for recompiling it.
func (s *Set) current() *prepared {
	return &prepared{lanes: s.lanes, laneIdx: s.laneIdx, def: s.def, static: s.static, auto: s.cur.Load().auto}
}

// compileLocked makes a table of the live state and publishes it: the
// exact index as it stands, and the router recompiled only when a glob
// changed. The live state always compiled before, and every dynamic entry
// is validated when added, so an error here is a bug; it is logged and the
// old table stays.
func (s *Set) compileLocked() error {
	start := time.Now()
	cur := s.cur.Load()
	rt, refs := cur.rt, cur.refs
	if s.routerDirty {
		globs := make([]*entry, 0, len(s.globs))
		for _, e := range s.globs {
			globs = append(globs, e)
		}
		var err error
		if rt, refs, err = compileRouter(s.current(), globs); err != nil {
			s.log.Error("recompiling the routing table failed; keeping the old one", "error", err)
			return err
		}
	}
	t := &Table{set: s, exact: s.ex, rt: rt, refs: refs, lanes: cur.lanes, auto: cur.auto}
	s.exOwned = [exactShards]bool{} // t shares them all now
	s.routerDirty = false
	s.cur.Store(t)
	if s.publish != nil {
		s.publish(t)
	}
	s.dirty = false
	s.compiles++
	s.pace.done(start, time.Since(start))
	return nil
}

func (s *Set) unknownLaneLocked(name string) error {
	return (&prepared{lanes: s.lanes}).unknownLane(name)
}

// String is for debugging: the number of mappings of each kind.
func (s *Set) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("mapping.Set{static: %d, dynamic: %d, learned: %d}", len(s.static), len(s.dyn), s.learned)
}
