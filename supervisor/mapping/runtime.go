package mapping

import (
	"cmp"
	"slices"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
)

// List returns every mapping (static, runtime and learned, including learned
// ones whose paced compile is still pending), sorted by lane name, then
// pattern, then method.
func (s *Set) List() []api.Mapping {
	s.mu.Lock()
	out := make([]api.Mapping, 0, len(s.static)+len(s.dyn))
	for _, e := range s.static {
		out = append(out, e.mapping())
	}
	for _, e := range s.dyn {
		out = append(out, e.mapping())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b api.Mapping) int {
		return cmp.Or(cmp.Compare(a.Lane, b.Lane), cmp.Compare(a.Pattern, b.Pattern),
			cmp.Compare(a.Method, b.Method), cmp.Compare(a.Source, b.Source))
	})
	return out
}

// parse validates a method and pattern as the admin API receives them.
// method may be empty with pattern holding "METHOD PATH" whole.
func parse(method, pattern string) (key, error) {
	p, err := config.ParsePattern(method + " " + pattern)
	if err != nil {
		return key{}, api.BadRequest("%v", err)
	}
	return key{p.Method, p.Path}, nil
}

// Add adds a runtime mapping (source "api", dynamic): it wins over a static
// mapping of the same pattern, and replaces a runtime or learned one. An
// unknown lane is a 404, a malformed pattern a 400 (the pattern is parsed
// as the config parses it), one more runtime mapping than MaxRuntime a
// 409; a refused call changes nothing.
//
// An exact path costs one shard copy and no recompile (exact.go); a glob
// recompiles the router's table of static mappings and dynamic globs.
func (s *Set) Add(lane, method, pattern string) (api.Mapping, error) {
	k, err := parse(method, pattern)
	if err != nil {
		return api.Mapping{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.laneIdx[lane]; !ok {
		return api.Mapping{}, s.unknownLaneLocked(lane)
	}
	old := s.dyn[k]
	if (old == nil || old.src != srcAPI) && s.runtime >= s.maxRT {
		return api.Mapping{}, api.Conflict("map: %d runtime mappings are held, the most allowed; remove some (lanectl unmap), or cover many paths with one glob such as \"GET /report/*\"", s.maxRT)
	}
	e := newEntry(lane, k.method, k.path, srcAPI, s.now())
	s.setDynLocked(k, e)
	if err := s.compileLocked(); err != nil {
		if old != nil {
			s.setDynLocked(k, old)
		} else {
			s.delDynLocked(k)
		}
		return api.Mapping{}, err
	}
	if old == nil || old.src != srcAPI {
		s.runtime++
	}
	if old != nil && old.src == srcLearned {
		s.learned--
		s.nEntries.Store(int64(s.learned))
	}
	s.changedLocked()
	if old != nil {
		s.log.Info("replaced mapping", "pattern", e.pattern, "lane", lane, "was_lane", old.lane, "was_source", old.src.String())
	} else {
		s.log.Info("added mapping", "pattern", e.pattern, "lane", lane)
	}
	return e.mapping(), nil
}

// Remove removes a runtime or learned mapping; a static mapping of the same
// pattern, if any, takes over again. A mapping that does not exist is a
// 404, a static one a 409.
func (s *Set) Remove(method, pattern string) error {
	k, err := parse(method, pattern)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.dyn[k]
	if !ok {
		for _, e := range s.static {
			if e.method == k.method && e.path == k.path {
				return api.Conflict("%s %s is a static mapping of lane %s: static mappings come from the config file; edit it and reload",
					k.method, k.path, e.lane)
			}
		}
		return api.NotFound("no mapping %s %s", k.method, k.path)
	}
	s.delDynLocked(k)
	if err := s.compileLocked(); err != nil {
		s.setDynLocked(k, old)
		return err
	}
	switch old.src {
	case srcLearned:
		s.learned--
		s.nEntries.Store(int64(s.learned))
	case srcAPI:
		s.runtime--
	}
	s.changedLocked()
	s.log.Info("removed mapping", "pattern", old.pattern, "lane", old.lane, "source", old.src.String())
	return nil
}
