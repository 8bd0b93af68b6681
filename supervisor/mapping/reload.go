package mapping

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// maxChangeLines caps the per-mapping lines of one kind in a reload's
// changes; past it one line gives the rest as a count (a lane holding
// 10,000 learned mappings must not answer a reload with 10,000 lines).
const maxChangeLines = 20

// Reconfigure applies a reloaded config: it replaces the static mappings
// wholesale, keeps runtime and learned mappings whose lane still exists
// (lane indices are re-resolved by name), drops the others, and applies the
// new auto_map settings: without auto_map every learned mapping goes; when
// its lane changes the learned mappings of the old lane go; when max_entries
// shrinks the least recently hit are evicted. It returns one line per
// change. On error nothing changes.
//
// The new table goes to commit (nil: to Config.Publish), called with the
// Set's lock held, before Reconfigure returns: a reload stores it there
// with the lanes of the new config, in one swap, and no runtime or learned
// change can publish a table between the two.
func (s *Set) Reconfigure(c Config, commit func(*Table)) (changes []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.prepare(c)
	if err != nil {
		return nil, err
	}
	oldAuto := s.cur.Load().auto

	// A static mapping that is still there, same lane and pattern, keeps its
	// entry and so its statistics.
	type skey struct{ lane, method, path string }
	kept := make(map[skey]*entry, len(s.static))
	for _, e := range s.static {
		kept[skey{e.lane, e.method, e.path}] = e
	}
	same := len(p.static) == len(s.static)
	for i, e := range p.static {
		if o, ok := kept[skey{e.lane, e.method, e.path}]; ok {
			p.static[i] = o
		}
		same = same && p.static[i] == s.static[i]
	}
	if !same {
		changes = append(changes, fmt.Sprintf("map: static mappings replaced (%d -> %d)", len(s.static), len(p.static)))
	}

	// Dynamic mappings, in a stable order so the change lines are too.
	old := make([]*entry, 0, len(s.dyn))
	for _, e := range s.dyn {
		old = append(old, e)
	}
	slices.SortFunc(old, func(a, b *entry) int {
		return cmp.Or(cmp.Compare(a.src, b.src), cmp.Compare(a.lane, b.lane), strings.Compare(a.pattern, b.pattern))
	})
	dyn := make(map[key]*entry, len(s.dyn))
	var dropped [3][]string // by source
	var learned []*entry
	for _, e := range old {
		_, laneOK := p.laneIdx[e.lane]
		switch {
		case !laneOK:
			dropped[e.src] = append(dropped[e.src], fmt.Sprintf("map: dropped %s mapping %s (lane gone: %s)", kind(e.src), e.pattern, e.lane))
			continue
		case e.src == srcLearned && p.auto == nil:
			dropped[e.src] = append(dropped[e.src], fmt.Sprintf("map: dropped learned mapping %s (auto_map removed)", e.pattern))
			continue
		case e.src == srcLearned && p.auto.cfg.Lane != e.lane:
			dropped[e.src] = append(dropped[e.src], fmt.Sprintf("map: dropped learned mapping %s (auto_map lane is now %s, not %s)", e.pattern, p.auto.cfg.Lane, e.lane))
			continue
		}
		dyn[key{e.method, e.path}] = e
		if e.src == srcLearned {
			learned = append(learned, e)
		}
	}
	for _, lines := range dropped {
		if len(lines) > maxChangeLines {
			lines = append(lines[:maxChangeLines], fmt.Sprintf("map: ... and %d more dropped like these", len(lines)-maxChangeLines))
		}
		changes = append(changes, lines...)
	}

	// max_entries shrank below what is held: evict the least recently hit.
	var evicted int
	if p.auto != nil && len(learned) > p.auto.cfg.MaxEntries {
		slices.SortFunc(learned, func(a, b *entry) int {
			return cmp.Or(cmp.Compare(a.recency(), b.recency()), strings.Compare(a.pattern, b.pattern))
		})
		for _, e := range learned[:len(learned)-p.auto.cfg.MaxEntries] {
			delete(dyn, key{e.method, e.path})
			evicted++
		}
		changes = append(changes, fmt.Sprintf("map: auto_map max_entries is %d: evicted %d least recently hit learned mappings", p.auto.cfg.MaxEntries, evicted))
	}
	changes = append(changes, autoChanges(oldAuto, p)...)

	t, err := s.build(p, dyn)
	if err != nil {
		return nil, err
	}
	if commit == nil {
		commit = s.publish
	}
	s.commit(p, dyn, t, commit)
	s.changedLocked()
	s.nEvicted.Add(uint64(evicted))
	s.full = false
	for _, line := range changes {
		s.log.Info(line)
	}
	return changes, nil
}

func kind(src source) string {
	switch src {
	case srcAPI:
		return "runtime"
	case srcLearned:
		return "learned"
	}
	return "static"
}

// autoChanges describes what changed in auto_map's settings.
func autoChanges(old *learner, p *prepared) []string {
	nu := p.auto
	switch {
	case old == nil && nu == nil:
		return nil
	case old == nil:
		return []string{fmt.Sprintf("map: auto_map on (threshold %s, lane %s)", nu.cfg.Threshold, nu.cfg.Lane)}
	case nu == nil:
		return []string{"map: auto_map off"}
	}
	var out []string
	o, n := old.cfg, nu.cfg
	if o.Threshold != n.Threshold {
		out = append(out, fmt.Sprintf("map: auto_map threshold %s -> %s", o.Threshold, n.Threshold))
	}
	if o.Lane != n.Lane {
		out = append(out, fmt.Sprintf("map: auto_map lane %s -> %s", o.Lane, n.Lane))
	}
	if !slices.Equal(o.From, n.From) {
		out = append(out, fmt.Sprintf("map: auto_map from [%s] -> [%s]", strings.Join(o.From, ", "), strings.Join(n.From, ", ")))
	}
	if o.ForgetAfter != n.ForgetAfter {
		out = append(out, fmt.Sprintf("map: auto_map forget_after %s -> %s", o.ForgetAfter, n.ForgetAfter))
	}
	if o.MaxEntries != n.MaxEntries {
		out = append(out, fmt.Sprintf("map: auto_map max_entries %d -> %d", o.MaxEntries, n.MaxEntries))
	}
	return out
}
