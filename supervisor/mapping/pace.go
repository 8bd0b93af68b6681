package mapping

import "time"

// Recompiling on learning is paced, not done per learned mapping.
//
// (Since issue 15 a learned mapping, an exact path, goes into the exact
// index (exact.go) and a table costs a shard copy, not a router compile;
// the pacing stays as a bound on table churn. What follows is why it was
// needed when every change recompiled the router.)
//
// Compiling is O(mappings): measured with router's BenchmarkCompileLearned
// on the 2-core dev box, 0.56 ms for 1,000 learned routes and 4.6 ms for
// 10,000 (the default max_entries). A flood of distinct slow URLs compiling
// once per URL would spend minutes of CPU per million requests. So the first
// learned mapping after a quiet spell compiles at once (it goes live before
// Observe returns), and the ones that follow within the gap are batched into
// one compile when the gap ends. The gap is at least minCompileGap and four
// times the last compile's cost, so compiling takes at most a fifth of a core
// however hard the flood.
//
// Changes made by a person (Add, Remove, Reconfigure) and by Sweep compile
// at once: they are rare, and their caller wants to see the result.
const minCompileGap = 5 * time.Millisecond

// pacer remembers the last compile. It uses the real clock, never the Set's
// injected one: it spaces out CPU work, it is not a mapping timestamp.
type pacer struct {
	end  time.Time
	cost time.Duration
}

func (p *pacer) done(start time.Time, cost time.Duration) {
	p.end = start.Add(cost)
	p.cost = cost
}

// wait is how long until the next paced compile may run.
func (p *pacer) wait(now time.Time) time.Duration {
	return p.end.Add(max(minCompileGap, 4*p.cost)).Sub(now)
}

// learnedChangedLocked compiles a learning change now or schedules it.
func (s *Set) learnedChangedLocked() {
	s.dirty = true
	if s.timerSet {
		return
	}
	if w := s.pace.wait(time.Now()); w > 0 {
		s.timerSet = true
		time.AfterFunc(w, s.paced)
		return
	}
	s.compileLocked()
}

func (s *Set) paced() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timerSet = false
	if s.dirty {
		s.compileLocked()
	}
}

// Flush compiles learned mappings still waiting for their paced compile, so
// that they take effect now (tests, and a supervisor that wants a settled
// table).
func (s *Set) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirty {
		s.compileLocked()
	}
}
