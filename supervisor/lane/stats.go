package lane

import (
	"github.com/lanes-dev/lanes/shared/api"

	"slices"
	"sync"
	"time"
)

// latencyWindow is how many recent requests the lane's percentiles cover.
const latencyWindow = 2048

// latency keeps the total times of the last latencyWindow requests.
// Percentiles of recent requests tell an operator more than figures since
// start, and a fixed ring costs nothing to keep.
type latency struct {
	mu   sync.Mutex
	ring [latencyWindow]time.Duration
	n    uint64
}

func (l *latency) add(d time.Duration) {
	l.mu.Lock()
	l.ring[l.n%latencyWindow] = d
	l.n++
	l.mu.Unlock()
}

func (l *latency) percentiles() api.Percentiles {
	l.mu.Lock()
	n := int(min(l.n, latencyWindow))
	s := make([]time.Duration, n)
	copy(s, l.ring[:n])
	l.mu.Unlock()
	if n == 0 {
		return api.Percentiles{}
	}
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q*float64(n)+0.5) - 1
		i = max(0, min(i, n-1))
		return float64(s[i].Microseconds()) / 1000
	}
	return api.Percentiles{Count: n, P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: float64(s[n-1].Microseconds()) / 1000}
}

// Status returns a snapshot of the lane for the admin API.
func (l *Lane) Status() api.Lane {
	now := time.Now()
	l.mu.Lock()
	st := api.Lane{
		Name:           l.name,
		State:          "ok",
		MinWorkers:     l.cfg.MinWorkers,
		MaxWorkers:     l.cfg.MaxWorkers,
		Concurrency:    l.cfg.Concurrency,
		MaxQueue:       l.cfg.MaxQueue,
		QueueTimeout:   l.cfg.QueueTimeout.String(),
		RequestTimeout: l.cfg.RequestTimeout.String(),
		IdleTimeout:    l.cfg.IdleTimeout.String(),
		Workers:        make([]api.Worker, 0, len(l.workers)),
		WorkersByState: make(map[string]int, len(states)),
		Queued:         len(l.queue),
		Inflight:       l.inflight,
		Draining:       l.draining > 0,
		CrashLoop:      l.crash.Looping(),
		Crashes:        l.crash.Count(),
		LastExit:       l.lastExit,
		LastDrain:      l.lastDrain,
	}
	switch {
	case l.stopping:
		st.State = "stopping"
	case st.CrashLoop:
		st.State = "crash_loop"
	case st.Draining:
		st.State = "draining"
	}
	if b := l.crash.Until().Sub(now); b > 0 {
		st.BackoffMS = b.Milliseconds()
	}
	for _, s := range states[:len(states)-1] {
		st.WorkersByState[s.String()] = 0
	}
	if l.direct != nil {
		l.statusDirectLocked(&st)
	}
	for _, w := range l.workers {
		if w == l.direct {
			continue // slots, not a process
		}
		pid := w.pid
		if pid == 0 {
			pid = w.proc.PID() // forked, still starting (or never handshaking)
		}
		ws := api.Worker{PID: pid, State: w.state.String(), Inflight: w.inflight, Served: w.served, RSS: w.rss,
			Goroutines: w.goroutines, Allocs: w.allocs}
		if n, ok := w.proc.(interface{ Note() string }); ok {
			ws.Status = n.Note()
		}
		if !w.ready.IsZero() {
			ws.UptimeS = now.Sub(w.ready).Round(time.Millisecond).Seconds()
		}
		st.Workers = append(st.Workers, ws)
		st.WorkersByState[ws.State]++
	}
	l.mu.Unlock()
	st.Served = l.served.Load()
	st.Rejected = l.rejected.Load()
	st.Timeouts = l.timeouts.Load()
	st.Killed = l.killed.Load()
	st.Respawns = l.respawns.Load()
	st.ScaleUps = l.scaleUps.Load()
	st.Drains = l.drains.Load()
	st.Latency = l.lat.percentiles()
	return st
}

// Load is the lane's load at one moment, for the supervisor's sampler: a
// few counts read under the lock, with none of Status's allocations.
type Load struct {
	Queued   int // requests waiting for a worker
	Inflight int // requests running on workers
	Ready    int // workers in rotation; a direct lane: its slots
	Busy     int // workers running at least one request, in rotation or not; a direct lane: slots in use
}

// Load returns the lane's load now.
func (l *Lane) Load() Load {
	l.mu.Lock()
	defer l.mu.Unlock()
	ld := Load{Queued: len(l.queue), Inflight: l.inflight}
	if l.direct != nil {
		if l.direct.state == Ready {
			ld.Ready = l.direct.conc
		}
		ld.Busy = l.direct.inflight
		return ld
	}
	for _, w := range l.workers {
		if w.state == Ready {
			ld.Ready++
		}
		if w.inflight > 0 {
			ld.Busy++
		}
	}
	return ld
}
