package supervisor

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/version"
	"github.com/lanes-dev/lanes/supervisor/lane"
)

// metrics is the Prometheus exposition of GET /metrics. The hot path
// (observe, once per request) touches one counter and four histograms,
// resolved per lane and status code once and cached; everything else is
// read from the lanes' own counters when Prometheus scrapes.
type metrics struct {
	s        *Supervisor
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	queue    *prometheus.HistogramVec
	filter   *prometheus.HistogramVec
	run      *prometheus.HistogramVec
	total    *prometheus.HistogramVec

	lanes sync.Map // lane name → *laneMetrics
}

// laneMetrics are one lane's resolved series.
type laneMetrics struct {
	codes                     [600]atomic.Pointer[prometheus.Counter]
	queue, filter, run, total prometheus.Observer
	m                         *metrics
	name                      string
	// counts are the same requests again, in the form the sampler reads
	// (GET /api/samples).
	counts laneCounts
}

// buckets cover 100 µs to 5 min: fast requests and hung ones alike.
var buckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

func newMetrics(s *Supervisor) *metrics {
	hist := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, []string{"lane"})
	}
	m := &metrics{
		s:   s,
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_requests_total", Help: "Requests answered, by lane and status code (503s of a full queue included).",
		}, []string{"lane", "code"}),
		queue:  hist("lanes_request_queue_seconds", "Time a request waited in its lane's queue."),
		filter: hist("lanes_request_filter_seconds", "Time a worker spent filtering (theming) a response."),
		run:    hist("lanes_request_run_seconds", "Time a worker ran a request, filter excluded."),
		total:  hist("lanes_request_total_seconds", "Time from the request's arrival to its last byte from the worker."),
	}
	m.reg.MustRegister(m.requests, m.queue, m.filter, m.run, m.total, collector{s}, buildInfo(version.Get()),
		// The supervisor process itself, under the names every Go exporter
		// uses: go_* (goroutines, GC, go_memstats_mallocs_total) and
		// process_* (CPU, RSS, open descriptors against their limit).
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// buildInfo is lanes_build_info, always 1, labelled with what lanesd
// -version prints: a dashboard can tell which build each host runs. (Not
// collectors.NewBuildInfoCollector: every lanes metric is named lanes_.)
func buildInfo(in version.Info) prometheus.Gauge {
	rev := in.Revision
	switch {
	case rev == "":
		rev = "unknown"
	case in.Modified:
		rev += "-modified"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "lanes_build_info",
		Help:        "Always 1; the labels say which lanesd build runs (lanesd -version).",
		ConstLabels: prometheus.Labels{"version": in.Version, "revision": rev, "goversion": in.GoVersion},
	})
	g.Set(1)
	return g
}

func (m *metrics) lane(name string) *laneMetrics {
	if v, ok := m.lanes.Load(name); ok {
		return v.(*laneMetrics)
	}
	lm := &laneMetrics{
		m: m, name: name,
		queue: m.queue.WithLabelValues(name), filter: m.filter.WithLabelValues(name),
		run: m.run.WithLabelValues(name), total: m.total.WithLabelValues(name),
	}
	v, _ := m.lanes.LoadOrStore(name, lm)
	return v.(*laneMetrics)
}

// counts returns the lane's running totals for the sampler.
func (m *metrics) counts(name string) *laneCounts { return &m.lane(name).counts }

// observe records one finished request.
func (m *metrics) observe(laneName string, o *lane.Outcome) {
	lm := m.lane(laneName)
	code := o.Status
	if code < 100 || code >= len(lm.codes) {
		code = 0
	}
	c := lm.codes[code].Load()
	if c == nil {
		cc := m.requests.WithLabelValues(lm.name, strconv.Itoa(code))
		lm.codes[code].Store(&cc)
		c = &cc
	}
	(*c).Inc()
	lm.counts.observe(o)
	lm.queue.Observe(o.Queue.Seconds())
	if o.Result == lane.Refused {
		return
	}
	lm.filter.Observe(o.Filter.Seconds())
	lm.run.Observe(o.Run.Seconds())
	lm.total.Observe(o.Total.Seconds())
}

func (s *Supervisor) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// collector reads the lanes, the mappings and the front at scrape time.
type collector struct{ s *Supervisor }

var (
	descQueued    = prometheus.NewDesc("lanes_queue_depth", "Requests waiting in the lane's queue.", []string{"lane"}, nil)
	descInflight  = prometheus.NewDesc("lanes_inflight", "Requests running on the lane's workers.", []string{"lane"}, nil)
	descWorkers   = prometheus.NewDesc("lanes_workers", "Worker processes by state.", []string{"lane", "state"}, nil)
	descMin       = prometheus.NewDesc("lanes_min_workers", "The lane's min_workers.", []string{"lane"}, nil)
	descMax       = prometheus.NewDesc("lanes_max_workers", "The lane's max_workers.", []string{"lane"}, nil)
	descServed    = prometheus.NewDesc("lanes_served_total", "Requests a worker of the lane was given and that ended.", []string{"lane"}, nil)
	descRejected  = prometheus.NewDesc("lanes_rejected_total", "Requests refused with 503: queue full or queue timeout.", []string{"lane"}, nil)
	descTimeouts  = prometheus.NewDesc("lanes_timeouts_total", "Requests that passed the lane's request_timeout (504).", []string{"lane"}, nil)
	descKills     = prometheus.NewDesc("lanes_kills_total", "Workers killed: hard timeout or failed health check.", []string{"lane"}, nil)
	descRespawns  = prometheus.NewDesc("lanes_respawns_total", "Workers started to replace one that died, was killed, drained or recycled.", []string{"lane"}, nil)
	descScaleUps  = prometheus.NewDesc("lanes_scale_ups_total", "Workers started for load or a larger min_workers.", []string{"lane"}, nil)
	descDrains    = prometheus.NewDesc("lanes_drains_total", "Drains of the lane (API, SIGUSR2, reload).", []string{"lane"}, nil)
	descDraining  = prometheus.NewDesc("lanes_draining", "1 while a drain of the lane runs.", []string{"lane"}, nil)
	descCrashLoop = prometheus.NewDesc("lanes_crash_loop", "1 while the lane's workers crash in a loop.", []string{"lane"}, nil)
	descAutoMap   = prometheus.NewDesc("lanes_automap_entries", "Learned mappings held.", nil, nil)
	descLearned   = prometheus.NewDesc("lanes_automap_learned_total", "Mappings learned by auto_map.", nil, nil)
	descForgotten = prometheus.NewDesc("lanes_automap_forgotten_total", "Learned mappings forgotten (fast again, or not hit).", nil, nil)
	descEvicted   = prometheus.NewDesc("lanes_automap_evicted_total", "Learned mappings evicted past max_entries.", nil, nil)
	descAccept    = prometheus.NewDesc("lanes_accept_errors_total", "Temporary accept failures (EMFILE, ENFILE, ...), each retried.", []string{"listener"}, nil)
	descOverCap   = prometheus.NewDesc("lanes_connections_refused_total", "Connections closed at once because the listener's max_conns were open.", []string{"listener"}, nil)
	descTruncated = prometheus.NewDesc("lanes_truncated_total", "Responses cut short by a failing worker; the client connection was closed.", nil, nil)
	descRetries   = prometheus.NewDesc("lanes_retries_total", "Requests retried on another worker after theirs died before answering.", nil, nil)

	// fetchd and the themes; the theme counters are fetchd's and start
	// again from 0 when it restarts.
	descFetchdUp       = prometheus.NewDesc("lanes_fetchd_up", "1 while fetchd runs and answers.", nil, nil)
	descFetchdRestarts = prometheus.NewDesc("lanes_fetchd_restarts_total", "fetchd processes started to replace others.", nil, nil)
	descCacheEntries   = prometheus.NewDesc("lanes_fetchd_cache_entries", "Theme copies in fetchd's cache.", nil, nil)
	descCacheBytes     = prometheus.NewDesc("lanes_fetchd_cache_bytes", "Bytes of HTML in fetchd's cache.", nil, nil)
	descThemeAge       = prometheus.NewDesc("lanes_theme_age_seconds", "Age of the theme's copy (since fetched or revalidated).", []string{"theme"}, nil)
	descThemeUsable    = prometheus.NewDesc("lanes_theme_usable", "1 while the theme has a copy to serve (fresh or stale).", []string{"theme"}, nil)
	descThemeFetches   = prometheus.NewDesc("lanes_theme_fetches_total", "Requests fetchd made to the theme's origin.", []string{"theme"}, nil)
	descThemeNotMod    = prometheus.NewDesc("lanes_theme_not_modified_total", "Revalidations the theme's origin answered 304.", []string{"theme"}, nil)
	descThemeFailures  = prometheus.NewDesc("lanes_theme_failures_total", "Fetches of the theme that failed (error, timeout, non-2xx).", []string{"theme"}, nil)
	descThemeRejected  = prometheus.NewDesc("lanes_theme_rejected_total", "Pages the origin sent that were not a usable theme.", []string{"theme"}, nil)
	descThemeStale     = prometheus.NewDesc("lanes_theme_stale_serves_total", "Lookups answered with a stale copy.", []string{"theme"}, nil)
	descThemeUnthemed  = prometheus.NewDesc("lanes_theme_unthemed_serves_total", "Lookups answered with no theme: content served unthemed.", []string{"theme"}, nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueued, descInflight, descWorkers, descMin, descMax, descServed, descRejected,
		descTimeouts, descKills, descRespawns, descScaleUps, descDrains, descDraining, descCrashLoop, descAutoMap, descLearned,
		descForgotten, descEvicted, descAccept, descOverCap, descTruncated, descRetries,
		descFetchdUp, descFetchdRestarts, descCacheEntries, descCacheBytes, descThemeAge, descThemeUsable,
		descThemeFetches, descThemeNotMod, descThemeFailures, descThemeRejected, descThemeStale, descThemeUnthemed} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.state.Load()
	if st.tbl == nil {
		return // not started
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, l := range st.lanes {
		ls := l.Status()
		n := ls.Name
		gauge(descQueued, float64(ls.Queued), n)
		gauge(descInflight, float64(ls.Inflight), n)
		for state, k := range ls.WorkersByState {
			gauge(descWorkers, float64(k), n, state)
		}
		gauge(descMin, float64(ls.MinWorkers), n)
		gauge(descMax, float64(ls.MaxWorkers), n)
		counter(descServed, ls.Served, n)
		counter(descRejected, ls.Rejected, n)
		counter(descTimeouts, ls.Timeouts, n)
		counter(descKills, ls.Killed, n)
		counter(descRespawns, ls.Respawns, n)
		counter(descScaleUps, ls.ScaleUps, n)
		counter(descDrains, ls.Drains, n)
		gauge(descDraining, b2f(ls.Draining), n)
		gauge(descCrashLoop, b2f(ls.CrashLoop), n)
	}
	learned, forgotten, evicted, entries := c.s.maps.Counters()
	gauge(descAutoMap, float64(entries))
	counter(descLearned, learned)
	counter(descForgotten, forgotten)
	counter(descEvicted, evicted)
	if c.s.frontLn != nil {
		counter(descAccept, c.s.frontLn.AcceptErrors(), "front")
		counter(descAccept, c.s.adminLn.AcceptErrors(), "admin")
		counter(descOverCap, c.s.adminLn.OverCap(), "admin")
	}
	counter(descTruncated, c.s.front.Truncated())
	counter(descRetries, c.s.front.Retries())
	if c.s.fetchd != nil {
		c.collectThemes(gauge, counter, b2f)
	}
}

// collectThemes asks fetchd for its state (bounded: see fetchdSup.status).
func (c collector) collectThemes(gauge func(*prometheus.Desc, float64, ...string),
	counter func(*prometheus.Desc, uint64, ...string), b2f func(bool) float64) {
	f, themes := c.s.fetchd.status()
	gauge(descFetchdUp, b2f(f.State == "ready" && f.LastError == ""))
	counter(descFetchdRestarts, f.Restarts)
	gauge(descCacheEntries, float64(f.CacheEntries))
	gauge(descCacheBytes, float64(f.CacheBytes))
	for _, t := range themes {
		n := t.Name
		gauge(descThemeAge, t.AgeS, n)
		gauge(descThemeUsable, b2f(t.State == shared.ThemeFresh || t.State == shared.ThemeStale), n)
		counter(descThemeFetches, t.Fetches, n)
		counter(descThemeNotMod, t.NotModified, n)
		counter(descThemeFailures, t.Failures, n)
		counter(descThemeRejected, t.Rejected, n)
		counter(descThemeStale, t.StaleServes, n)
		counter(descThemeUnthemed, t.UnthemedServes, n)
	}
}
