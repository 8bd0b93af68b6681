package supervisor

import (
	"context"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/supervisor/lane"
)

// The samples are the dashboard's memory (GET /api/samples): every
// sampleEvery the sampler reads each lane's running totals and load and
// keeps one sample in a fixed ring per lane, so that a page opened now
// shows the last sampleWindow. A sample holds rates and percentiles of its
// interval, not of all time: requests/s by status class from the deltas of
// counters, and the queue-wait p99 and latency p50/p99 of the requests
// that ended in the interval from the deltas of log-linear histograms.
const (
	sampleEvery  = 5 * time.Second
	sampleWindow = 15 * time.Minute
	ringSize     = int(sampleWindow / sampleEvery)
)

// histBuckets covers 0 µs to 2^40 µs (12 days) in log-linear buckets: four
// per power of two, so a percentile read from them is off by at most a
// bucket's width, under 25 % (12.5 % from its middle), from 4 µs up.
const histBuckets = 160

// durHist counts durations into histBuckets buckets; safe for concurrent
// use, one atomic add per value.
type durHist struct{ b [histBuckets]atomic.Uint64 }

func (h *durHist) add(d time.Duration) { h.b[histIndex(d)].Add(1) }

// histIndex is d's bucket: 0..3 µs one each, then four per power of two
// (the two bits after the leading one pick the quarter).
func histIndex(d time.Duration) int {
	us := uint64(max(d, 0) / time.Microsecond)
	if us < 4 {
		return int(us)
	}
	n := bits.Len64(us) // ≥ 3
	return min((n-2)*4+int(us>>(n-3))&3, histBuckets-1)
}

// histBounds is bucket i's range in µs: [lo, hi).
func histBounds(i int) (lo, hi float64) {
	if i < 4 {
		return float64(i), float64(i + 1)
	}
	shift, sub := uint(i/4-1), uint64(i%4)
	return float64((4 + sub) << shift), float64((5 + sub) << shift)
}

// quantile is the q-quantile, in milliseconds, of the values counted in c
// (total of them), interpolated within its bucket; NaN when total is 0.
func quantile(c *[histBuckets]uint64, total uint64, q float64) float64 {
	if total == 0 {
		return math.NaN()
	}
	rank := math.Max(1, math.Ceil(q*float64(total))) // the rank-th smallest value
	var cum float64
	last := 0
	for i, n := range c {
		if n == 0 {
			continue
		}
		last = i
		if cum+float64(n) >= rank {
			lo, hi := histBounds(i)
			return (lo + (hi-lo)*(rank-cum-0.5)/float64(n)) / 1000
		}
		cum += float64(n)
	}
	_, hi := histBounds(last) // counts moved under us: the top
	return hi / 1000
}

// laneCounts are one lane's running totals that the sampler reads, kept
// with its metrics by name (metrics.lane), so they outlive reloads. They
// count what the metrics count: lanes_requests_total by class, and
// lanes_request_queue_seconds and lanes_request_total_seconds.
type laneCounts struct {
	class [6]atomic.Uint64 // by status / 100; 0: outside 100..599
	queue durHist          // every request's queue wait, refused ones included
	total durHist          // answered requests' total time
}

// observe counts one finished request (metrics.observe calls it).
func (c *laneCounts) observe(o *lane.Outcome) {
	cls := o.Status / 100
	if cls < 1 || cls > 5 {
		cls = 0
	}
	c.class[cls].Add(1)
	c.queue.add(o.Queue)
	if o.Result != lane.Refused {
		c.total.add(o.Total)
	}
}

// sample is one lane at one moment, with the rates and percentiles of the
// interval before it. NaN: not known (a lane's first sample has no rates;
// an interval in which no request ended has no percentiles).
type sample struct {
	seq                           uint64
	at                            int64      // unix milliseconds
	rate                          [4]float32 // requests/s answered 2xx, 3xx, 4xx, 5xx
	queued, inflight, ready, busy int32
	waitP99, p50, p99             float32 // milliseconds
}

// laneRing is one lane's last ringSize samples and the totals at the last
// one, from which the next one's deltas are taken. It is allocated once,
// when the lane is first sampled; a sample costs no allocation.
type laneRing struct {
	name   string
	buf    [ringSize]sample
	n      int // samples held
	next   int // where the next one goes
	primed bool
	last   time.Time
	class  [6]uint64
	queue  [histBuckets]uint64
	total  [histBuckets]uint64
}

func (r *laneRing) record(seq uint64, now time.Time, c *laneCounts, ld lane.Load) {
	nan := float32(math.NaN())
	s := sample{seq: seq, at: now.UnixMilli(), queued: int32(ld.Queued), inflight: int32(ld.Inflight),
		ready: int32(ld.Ready), busy: int32(ld.Busy), rate: [4]float32{nan, nan, nan, nan}, waitP99: nan, p50: nan, p99: nan}
	dt := now.Sub(r.last).Seconds()
	for i := range r.class {
		v := c.class[i].Load()
		if r.primed && dt > 0 && i >= 2 && i <= 5 {
			s.rate[i-2] = float32(float64(v-r.class[i]) / dt)
		}
		r.class[i] = v
	}
	var d [histBuckets]uint64
	if n := delta(&d, &c.queue, &r.queue); r.primed {
		s.waitP99 = float32(quantile(&d, n, 0.99))
	}
	if n := delta(&d, &c.total, &r.total); r.primed {
		s.p50, s.p99 = float32(quantile(&d, n, 0.50)), float32(quantile(&d, n, 0.99))
	}
	r.primed, r.last = true, now
	r.buf[r.next] = s
	r.next = (r.next + 1) % ringSize
	r.n = min(r.n+1, ringSize)
}

// delta sets d to h's counts since prev, moves prev to them, and returns
// how many values d holds.
func delta(d *[histBuckets]uint64, h *durHist, prev *[histBuckets]uint64) uint64 {
	var n uint64
	for i := range d {
		v := h.b[i].Load()
		d[i] = v - prev[i]
		prev[i] = v
		n += d[i]
	}
	return n
}

// sampler holds the rings of the lanes of the last sample, in their
// config order. Safe for concurrent use.
type sampler struct {
	mu    sync.Mutex
	seq   uint64
	rings []*laneRing
}

// sampled is what the sampler reads of a lane (a *lane.Lane; a fake in
// tests).
type sampled interface {
	Name() string
	Load() lane.Load
}

// takeSample records one sample of each of lanes at now, their totals
// from counts, and forgets the rings of lanes that are gone (a reload
// removed them): a lane added again later starts a new ring. Once every
// lane has its ring it allocates nothing.
func takeSample[L sampled](sm *sampler, now time.Time, lanes []L, counts func(name string) *laneCounts) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	sm.seq++
	for k, l := range lanes {
		name := l.Name()
		// Find the lane's ring and move it to position k: after the loop
		// rings[:len(lanes)] are the lanes', in order, and the rest gone.
		j := k
		for j < len(sm.rings) && sm.rings[j].name != name {
			j++
		}
		if j == len(sm.rings) {
			sm.rings = append(sm.rings, &laneRing{name: name})
		}
		sm.rings[k], sm.rings[j] = sm.rings[j], sm.rings[k]
		sm.rings[k].record(sm.seq, now, counts(name), l.Load())
	}
	clear(sm.rings[len(lanes):])
	sm.rings = sm.rings[:len(lanes)]
}

// samples returns the samples after seq since, oldest first, of every
// lane or, with name set, of that lane alone; ok is false when there is no
// lane of that name.
func (sm *sampler) samples(name string, since uint64) (out api.Samples, ok bool) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	out = api.Samples{IntervalS: sampleEvery.Seconds(), WindowS: sampleWindow.Seconds(), Seq: sm.seq, Lanes: []api.LaneSamples{}}
	for _, r := range sm.rings {
		if name != "" && r.name != name {
			continue
		}
		ok = true
		ls := api.LaneSamples{Lane: r.name, Samples: []api.Sample{}}
		for i := range r.n {
			s := &r.buf[(r.next-r.n+i+ringSize)%ringSize]
			if s.seq > since {
				ls.Samples = append(ls.Samples, s.api())
			}
		}
		out.Lanes = append(out.Lanes, ls)
	}
	return out, ok || name == ""
}

func (s *sample) api() api.Sample {
	out := api.Sample{
		Seq: s.seq, Time: time.UnixMilli(s.at), Queued: int(s.queued), Inflight: int(s.inflight),
		Ready: int(s.ready), Busy: int(s.busy),
		QueueWaitP99: known(s.waitP99), LatencyP50: known(s.p50), LatencyP99: known(s.p99),
	}
	if !math.IsNaN(float64(s.rate[0])) {
		out.RPS = &api.StatusRates{S2xx: round3(s.rate[0]), S3xx: round3(s.rate[1]), S4xx: round3(s.rate[2]), S5xx: round3(s.rate[3])}
	}
	return out
}

// known is v rounded for the API, or nil when it is NaN.
func known(v float32) *float64 {
	if math.IsNaN(float64(v)) {
		return nil
	}
	f := round3(v)
	return &f
}

// round3 keeps three decimals: float32's noise (0.20000000298) is not news.
func round3(v float32) float64 { return math.Round(float64(v)*1000) / 1000 }

// sampleLoop takes a sample at once and then every sampleEvery until ctx
// ends.
func (s *Supervisor) sampleLoop(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	now := time.Now()
	for {
		takeSample(&s.samples, now, s.state.Load().lanes, s.metrics.counts)
		select {
		case <-ctx.Done():
			return
		case now = <-t.C:
		}
	}
}

// Samples is GET /api/samples: the last sampleWindow of every lane, or of
// the lane named laneName, after seq since.
func (s *Supervisor) Samples(laneName string, since uint64) (api.Samples, error) {
	out, ok := s.samples.samples(laneName, since)
	if !ok {
		return api.Samples{}, api.NotFound("no lane %q", laneName)
	}
	return out, nil
}
