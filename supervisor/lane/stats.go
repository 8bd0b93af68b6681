package lane

import (
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

// Percentiles are in milliseconds over the recent window.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

func (l *latency) percentiles() Percentiles {
	l.mu.Lock()
	n := int(min(l.n, latencyWindow))
	s := make([]time.Duration, n)
	copy(s, l.ring[:n])
	l.mu.Unlock()
	if n == 0 {
		return Percentiles{}
	}
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q*float64(n)+0.5) - 1
		i = max(0, min(i, n-1))
		return float64(s[i].Microseconds()) / 1000
	}
	return Percentiles{Count: n, P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: float64(s[n-1].Microseconds()) / 1000}
}

// WorkerStatus is one worker in a lane's status.
type WorkerStatus struct {
	PID      int     `json:"pid"`
	State    string  `json:"state"`
	Inflight int     `json:"inflight"`
	Served   uint64  `json:"served"`
	RSS      int64   `json:"rss"`
	Uptime   float64 `json:"uptime_s"`
}

// Status is a lane's state for the admin API.
type Status struct {
	Name           string         `json:"name"`
	MinWorkers     int            `json:"min_workers"`
	MaxWorkers     int            `json:"max_workers"`
	Concurrency    int            `json:"concurrency"`
	MaxQueue       int            `json:"max_queue"`
	RequestTimeout string         `json:"request_timeout"`
	Workers        []WorkerStatus `json:"workers"`
	Queued         int            `json:"queued"`
	Inflight       int            `json:"inflight"`
	Served         uint64         `json:"served"`
	Rejected       uint64         `json:"rejected"`
	Timeouts       uint64         `json:"timeouts"`
	Killed         uint64         `json:"killed"`
	Respawns       uint64         `json:"respawns"`
	Latency        Percentiles    `json:"latency_ms"`
	CrashLoop      bool           `json:"crash_loop"`
	Crashes        int            `json:"consecutive_crashes"`
	BackoffMS      int64          `json:"backoff_ms"`
	LastExit       string         `json:"last_exit,omitempty"`
}

// Status returns a snapshot of the lane.
func (l *Lane) Status() Status {
	now := time.Now()
	l.mu.Lock()
	st := Status{
		Name:           l.name,
		MinWorkers:     l.cfg.MinWorkers,
		MaxWorkers:     l.cfg.MaxWorkers,
		Concurrency:    l.cfg.Concurrency,
		MaxQueue:       l.cfg.MaxQueue,
		RequestTimeout: l.cfg.RequestTimeout.String(),
		Workers:        make([]WorkerStatus, 0, len(l.workers)),
		Queued:         len(l.queue),
		Inflight:       l.inflight,
		CrashLoop:      l.crashes >= crashLoopAt,
		Crashes:        l.crashes,
		LastExit:       l.lastExit,
	}
	if b := l.backoff.Sub(now); b > 0 {
		st.BackoffMS = b.Milliseconds()
	}
	for _, w := range l.workers {
		ws := WorkerStatus{State: w.state.String(), Inflight: w.inflight, Served: w.served, RSS: w.rss}
		if w.state != Starting { // pid and ready are written while starting, unlocked
			ws.PID = w.pid
			ws.Uptime = now.Sub(w.ready).Round(time.Millisecond).Seconds()
		}
		st.Workers = append(st.Workers, ws)
	}
	l.mu.Unlock()
	st.Served = l.served.Load()
	st.Rejected = l.rejected.Load()
	st.Timeouts = l.timeouts.Load()
	st.Killed = l.killed.Load()
	st.Respawns = l.respawns.Load()
	st.Latency = l.lat.percentiles()
	return st
}
