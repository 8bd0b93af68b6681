package mapping

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Runtime and learned mappings are saved to Config.StateFile, so that they
// survive a restart (design.md: "kept in state_dir"). The file is JSON,
// written whole to a temporary file, fsynced and renamed over the old one,
// so a crash leaves the old file or the new one, never half of one. It is
// bounded: at most MaxRuntime runtime and max_entries learned mappings, of
// paths no longer than a request line can be.
//
// Saving is debounced: the first change after a quiet spell is saved at
// once, the ones that follow within saveEvery together when it ends, so a
// flood of learned mappings writes once a second, not per request. Hit
// counts and last-hit times alone are saved at least every statsEvery
// (they decide what is forgotten after a restart), and everything once
// more when Run ends.
//
// A file that does not parse is moved aside (".corrupt-TIMESTAMP") with a
// warning and lanesd starts with no runtime or learned mappings: a state
// file never stops lanesd from starting.

// StateFileName is the state file's name in state_dir.
const StateFileName = "mappings.json"

const (
	stateVersion = 1
	saveEvery    = time.Second
	statsEvery   = time.Minute
	// maxStateFile bounds what load reads: 20,000 mappings of long paths.
	maxStateFile = 64 << 20
)

// stateFile is the file's content.
type stateFile struct {
	Version int            `json:"version"`
	Saved   time.Time      `json:"saved"`
	Runtime []savedRuntime `json:"runtime"`
	Learned []savedLearned `json:"learned"`
}

type savedRuntime struct {
	Lane    string     `json:"lane"`
	Method  string     `json:"method"`
	Pattern string     `json:"pattern"`
	Added   time.Time  `json:"added"`
	Hits    uint64     `json:"hits,omitempty"`
	LastHit *time.Time `json:"last_hit,omitempty"`
}

type savedLearned struct {
	Lane     string     `json:"lane"`
	Method   string     `json:"method"`
	Path     string     `json:"path"`
	Learned  time.Time  `json:"learned"`
	Hits     uint64     `json:"hits,omitempty"`
	LastHit  *time.Time `json:"last_hit,omitempty"`
	LastSlow time.Time  `json:"last_slow"` // last request at least half the threshold
}

// store is the state file and what was last saved to it.
type store struct {
	path string
	log  hclog.Logger
	kick chan struct{} // holds one token while a change waits to be saved
	// every is the debounce interval; saveEvery but in tests.
	every time.Duration
	wrote func() // tests: called after each write

	mu        sync.Mutex // one save at a time; guards what follows
	savedGen  uint64
	savedHits uint64
	failing   bool // the last save failed: say so once, and when it works again
}

func newStore(path string, log hclog.Logger) *store {
	return &store{path: path, log: log, kick: make(chan struct{}, 1), every: saveEvery}
}

// changedLocked records a change of runtime or learned mappings for the
// saver. Called with s.mu held.
func (s *Set) changedLocked() {
	if s.store == nil {
		return
	}
	s.gen++
	select {
	case s.store.kick <- struct{}{}:
	default:
	}
}

// snapshotLocked is what Save writes, the generation it is of, and the
// total of its hit counts.
func (s *Set) snapshotLocked() (f stateFile, gen, hits uint64) {
	f = stateFile{Version: stateVersion, Saved: s.now().UTC(), Runtime: []savedRuntime{}, Learned: []savedLearned{}}
	for _, e := range s.dyn {
		h := e.hits.Load()
		hits += h
		var last *time.Time
		if ns := e.lastHit.Load(); ns != 0 {
			t := time.Unix(0, ns).UTC()
			last = &t
		}
		switch e.src {
		case srcAPI:
			f.Runtime = append(f.Runtime, savedRuntime{Lane: e.lane, Method: e.method, Pattern: e.path, Added: e.added.UTC(), Hits: h, LastHit: last})
		case srcLearned:
			f.Learned = append(f.Learned, savedLearned{Lane: e.lane, Method: e.method, Path: e.path, Learned: e.added.UTC(),
				Hits: h, LastHit: last, LastSlow: time.Unix(0, e.lastSlow.Load()).UTC()})
		}
	}
	return f, s.gen, hits
}

// Save writes the runtime and learned mappings to the state file if they,
// or their hit counts, changed since the last save. Without a state file it
// does nothing. Run calls it; so may a caller that wants it on disk now.
func (s *Set) Save() error {
	st := s.store
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	s.mu.Lock()
	f, gen, hits := s.snapshotLocked()
	s.mu.Unlock()
	if gen == st.savedGen && hits == st.savedHits {
		return nil
	}
	slices.SortFunc(f.Runtime, func(a, b savedRuntime) int {
		return cmp.Or(cmp.Compare(a.Pattern, b.Pattern), cmp.Compare(a.Method, b.Method))
	})
	slices.SortFunc(f.Learned, func(a, b savedLearned) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Method, b.Method))
	})
	data, err := json.MarshalIndent(f, "", " ")
	if err == nil {
		err = writeFileAtomic(st.path, append(data, '\n'))
	}
	if err != nil {
		if !st.failing {
			st.log.Error("cannot save runtime and learned mappings; they will not survive a restart until this is fixed",
				"file", st.path, "error", err)
		}
		st.failing = true
		return err
	}
	if st.failing {
		st.log.Info("saving runtime and learned mappings works again", "file", st.path)
	}
	st.failing = false
	st.savedGen, st.savedHits = gen, hits
	if st.wrote != nil {
		st.wrote()
	}
	return nil
}

// writeFileAtomic replaces path with data: a temporary file beside it,
// fsynced, renamed over it, and the directory fsynced, so that a crash
// leaves the old file or the new one. The file is 0600: it names what the
// site's operators chose to route where.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// saveLoop saves each change, at most once per st.every, until ctx ends;
// then it saves what is left.
func (s *Set) saveLoop(ctx context.Context) {
	st := s.store
	stats := time.NewTicker(statsEvery)
	defer stats.Stop()
	for {
		select {
		case <-ctx.Done():
			s.Save() //nolint:errcheck // Save logs its failures
			return
		case <-stats.C:
		case <-st.kick:
		}
		s.Save() //nolint:errcheck // Save logs its failures
		wait := time.NewTimer(st.every)
		select {
		case <-ctx.Done():
			wait.Stop()
			s.Save() //nolint:errcheck // Save logs its failures
			return
		case <-wait.C:
		}
	}
}

// load reads the state file for New: the runtime and learned mappings p
// can hold. It drops, with a log line each, mappings of a lane p does not
// have; learned mappings auto_map would not have (it is off, or maps to
// another lane) or has forgotten (see Sweep); anything past the caps. A
// file that cannot be parsed is moved aside. It never fails.
func (s *Set) load(p *prepared) map[key]*entry {
	dyn := make(map[key]*entry)
	f, err := readState(s.store.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return dyn
	case errors.Is(err, errCorrupt):
		aside := s.store.path + ".corrupt-" + time.Now().UTC().Format("20060102T150405Z")
		if rerr := os.Rename(s.store.path, aside); rerr != nil {
			s.log.Warn("state file is corrupt and cannot be moved aside; starting with no runtime or learned mappings",
				"file", s.store.path, "error", err, "rename_error", rerr)
		} else {
			s.log.Warn("state file is corrupt; moved it aside and starting with no runtime or learned mappings",
				"file", s.store.path, "moved_to", aside, "error", err)
		}
		s.gen++ // write a good one at the next save
		return dyn
	case err != nil:
		s.log.Warn("cannot read state file; starting with no runtime or learned mappings", "file", s.store.path, "error", err)
		return dyn
	}

	var dropped []string
	drop := func(format string, args ...any) { dropped = append(dropped, fmt.Sprintf(format, args...)) }
	now := s.now()

	slices.SortFunc(f.Runtime, func(a, b savedRuntime) int { return a.Added.Compare(b.Added) })
	runtime := 0
	for _, r := range f.Runtime {
		k, err := parse(r.Method, r.Pattern)
		_, laneOK := p.laneIdx[r.Lane]
		switch {
		case err != nil:
			drop("dropped saved runtime mapping %s %s: %v", r.Method, r.Pattern, err)
			continue
		case !laneOK:
			drop("dropped saved runtime mapping %s (lane gone: %s)", k.method+" "+k.path, r.Lane)
			continue
		case runtime >= s.maxRT:
			drop("dropped saved runtime mapping %s (more than %d runtime mappings)", k.method+" "+k.path, s.maxRT)
			continue
		}
		e := newEntry(r.Lane, k.method, k.path, srcAPI, r.Added)
		restoreHits(e, r.Hits, r.LastHit)
		if _, dup := dyn[k]; !dup {
			runtime++
		}
		dyn[k] = e
	}

	var learned []*entry
	for _, l := range f.Learned {
		k, err := parse(l.Method, l.Path)
		pat := l.Method + " " + l.Path
		_, laneOK := p.laneIdx[l.Lane]
		switch {
		case err != nil || isGlob(l.Path) || len(l.Path) > maxLearnedPath:
			drop("dropped saved learned mapping %s: not a path auto_map learns", pat)
			continue
		case !laneOK:
			drop("dropped saved learned mapping %s (lane gone: %s)", pat, l.Lane)
			continue
		case p.auto == nil:
			drop("dropped saved learned mapping %s (auto_map is off)", pat)
			continue
		case p.auto.cfg.Lane != l.Lane:
			drop("dropped saved learned mapping %s (auto_map lane is now %s, not %s)", pat, p.auto.cfg.Lane, l.Lane)
			continue
		case dyn[k] != nil:
			continue // a runtime mapping of the same pattern wins, as Add makes it
		}
		e := newEntry(l.Lane, k.method, k.path, srcLearned, l.Learned)
		restoreHits(e, l.Hits, l.LastHit)
		e.lastSlow.Store(max(l.LastSlow.UnixNano(), e.addedNS))
		if fa := int64(p.auto.cfg.ForgetAfter); now.UnixNano()-e.recency() > fa || now.UnixNano()-e.lastSlow.Load() > fa {
			drop("dropped saved learned mapping %s (forgotten: not hit or not slow for %s)", pat, p.auto.cfg.ForgetAfter)
			continue
		}
		dyn[k] = e
		learned = append(learned, e)
	}
	if p.auto != nil && len(learned) > p.auto.cfg.MaxEntries {
		slices.SortFunc(learned, func(a, b *entry) int { return cmp.Compare(a.recency(), b.recency()) })
		for _, e := range learned[:len(learned)-p.auto.cfg.MaxEntries] {
			delete(dyn, key{e.method, e.path})
			drop("dropped saved learned mapping %s (more than max_entries %d)", e.pattern, p.auto.cfg.MaxEntries)
		}
	}

	for i, line := range dropped {
		if i == maxChangeLines {
			s.log.Warn(fmt.Sprintf("... and %d more saved mappings dropped", len(dropped)-maxChangeLines))
			break
		}
		s.log.Warn(line)
	}
	if len(dropped) > 0 {
		s.gen++ // the file still holds them: rewrite it
	}
	s.log.Info("loaded runtime and learned mappings", "file", s.store.path,
		"runtime", runtime, "learned", len(dyn)-runtime, "dropped", len(dropped))
	return dyn
}

func restoreHits(e *entry, hits uint64, last *time.Time) {
	e.hits.Store(hits)
	if last != nil {
		e.lastHit.Store(last.UnixNano())
	}
}

// errCorrupt is readState's error for a file that is not a state file.
var errCorrupt = errors.New("mapping: corrupt state file")

func readState(path string) (*stateFile, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", errCorrupt)
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxStateFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxStateFile {
		return nil, fmt.Errorf("%w: larger than %d bytes", errCorrupt, maxStateFile)
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if f.Version != stateVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", errCorrupt, f.Version, stateVersion)
	}
	return &f, nil
}
