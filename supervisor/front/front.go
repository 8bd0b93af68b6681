// Package front is the client-facing side of lanesd: the fasthttp server
// and what it does to every request. serve checks and prepares a request
// (prepare, headers.go), reads its body (readBody, body.go), classifies it
// into a lane with the snapshot it is given, gets it a slot and its
// answer (dispatch, dispatch.go) and sends that answer on (respond,
// respond.go), through a spool when it is large (spool.go). Every request
// that reached a lane ends in finish, exactly once, whichever way it ends:
// the lane's accounting, the metrics, the auto_map trace and the access
// log line (accesslog.go).
//
// The front knows lanes only through the Lane and Slot interfaces, and the
// running state only through the Snapshot the supervisor gives it.
package front

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/shared/logging"
	"github.com/lanes-dev/lanes/supervisor/lane"
	"github.com/lanes-dev/lanes/supervisor/mapping"
)

// Lane is what the front needs of a lane (package lane's, through the
// supervisor's adapter, whose Acquire hands out the *lane.Worker).
type Lane interface {
	Name() string
	// Direct says the lane's slots proxy to the upstream itself (app.direct).
	Direct() bool
	RequestTimeout() time.Duration
	// RetryAfter is the Retry-After, in seconds, of a refused request.
	RetryAfter() int
	// Acquire waits for a slot, bounded by the lane's queue (max_queue,
	// queue_timeout); its errors are lane.ErrQueueFull, ErrQueueTimeout
	// and ErrStopped. The slot must be released.
	Acquire() (Slot, error)
}

// Slot is a request's hold on one of a lane's slots (a worker's, or a
// direct lane's upstream connection), from Acquire to Release.
type Slot interface {
	// Do sends the request and reads the answer's header; its body
	// streams. Past deadline, Do or a read of the body fails.
	Do(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error
	// Exchange says how far a failed request got, and whether a body
	// that ended in io.EOF was whole.
	Exchange(resp *fasthttp.Response) lane.Exchange
	// Exec says the slot's worker is a program of any language: its
	// answers are filtered as an upstream's.
	Exec() bool
	PID() int
	// Begin shows o in GET /api/requests until its Release; Handoff moves
	// that to o's copy to, which the Release will get.
	Begin(o *lane.Outcome)
	Handoff(o, to *lane.Outcome)
	// Release gives the slot back and accounts for o in the lane.
	Release(o *lane.Outcome)
}

// Snapshot is what a request reads of the running state: the config, the
// lanes and the table compiled for them, swapped as one piece (the
// supervisor's one store per reload or change of mappings). Front reads
// the current one once when a request is classified, and once more when it
// finishes.
type Snapshot struct {
	Config *config.Config // its front block is fixed while lanesd runs
	Lanes  []Lane         // in Table's lane order
	Table  *mapping.Table
	Access *AccessLog // nil when access_log = false
	// UpstreamTLS says app.upstream is https, which direct lanes'
	// requests must say to their client.
	UpstreamTLS bool
}

// match returns the request's lane and the mapping that sent it there.
func (s *Snapshot) match(method, path []byte) (Lane, mapping.Ref) {
	i, ref := s.Table.Match(method, path)
	return s.Lanes[i], ref
}

// Options are what a Front needs besides the snapshot.
type Options struct {
	// Config is the front block, fixed while lanesd runs.
	Config config.Front
	// Log gets the front's own lines; the fasthttp server's go to
	// Log.Named("front").
	Log hclog.Logger
	// Warn is for warnings a flood of requests can repeat.
	Warn *logging.Limiter
	// RunDir holds the unlinked temporary files of spooled bodies.
	RunDir string
	// Snapshot returns the current snapshot.
	Snapshot func() *Snapshot
	// Observe, if set, records a finished request in the metrics.
	Observe func(lane string, o *lane.Outcome)
	// Ended, if set, is told of every request that leaves a lane, a
	// retried attempt included (a lane a reload removed stops after its
	// last).
	Ended func(Lane)
}

// Front is the front of one running lanesd.
type Front struct {
	opt  Options
	cfg  config.Front
	log  hclog.Logger
	warn *logging.Limiter
	bufs *buffers

	retries, truncated atomic.Uint64
}

// New returns a front; Server gives it its listener's server.
func New(opt Options) *Front {
	if opt.Log == nil {
		opt.Log = hclog.NewNullLogger()
	}
	if opt.Warn == nil {
		opt.Warn = logging.NewLimiter(opt.Log, time.Second)
	}
	return &Front{opt: opt, cfg: opt.Config, log: opt.Log, warn: opt.Warn, bufs: newBuffers(opt.Config)}
}

// Retries is how many requests were sent again to another worker after
// theirs died before answering.
func (f *Front) Retries() uint64 { return f.retries.Load() }

// Truncated is how many responses were cut short by a failing worker.
func (f *Front) Truncated() uint64 { return f.truncated.Load() }

// Server returns the client-facing server. Its limits keep one bad client
// from costing the others anything: ReadTimeout bounds reading a whole
// request (slowloris), ReadBufferSize caps the header (431), and serve
// enforces MaxBodySize on the streamed body (413) — before any 100
// Continue when the length is announced.
func (f *Front) Server() *fasthttp.Server {
	c := f.cfg
	return &fasthttp.Server{
		Handler:      f.serve,
		ErrorHandler: frontError,
		// An announced body over the limit is refused before any of it
		// is read. fasthttp reads the first 8 KB of a streamed body before
		// the handler, so such a request is made to look like one that
		// expects 100-continue: the ExpectHandler below then answers 413
		// without reading the body and closes the connection.
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			if h.ContentLength() > c.MaxBodySize && h.IsHTTP11() {
				h.Set(fasthttp.HeaderExpect, "100-continue")
			}
			return fasthttp.RequestConfig{}
		},
		ExpectHandler: func(ctx *fasthttp.RequestCtx) int {
			if ctx.Request.Header.ContentLength() > c.MaxBodySize {
				return fasthttp.StatusRequestEntityTooLarge
			}
			return fasthttp.StatusContinue
		},
		ReadTimeout:                   c.ReadTimeout,
		WriteTimeout:                  c.WriteTimeout,
		IdleTimeout:                   c.IdleTimeout,
		ReadBufferSize:                c.MaxHeaderSize,
		MaxRequestBodySize:            c.MaxBodySize,
		StreamRequestBody:             true,
		Concurrency:                   c.MaxConns,
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		CloseOnShutdown:               true,
		Logger:                        newFrontLogger(f.log.Named("front")),
	}
}

// buffers are the front's pools, sized by its config.
type buffers struct {
	body *sync.Pool // request bodies held in memory (client_body_buffer)
	resp *sync.Pool // responses held in memory (response_buffer)
	read *sync.Pool // the pump's read buffer
	fwd  sync.Pool  // *forward
}

func newBuffers(f config.Front) *buffers {
	b := &buffers{
		body: bufPool(f.ClientBodyBuffer),
		resp: &sync.Pool{New: func() any { b := make([]byte, 0, f.ResponseBuffer); return &b }},
		read: bufPool(32 << 10),
	}
	b.fwd.New = func() any { return new(forward) }
	return b
}

// frontError answers a request fasthttp could not read.
func frontError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		ctx.Error("request header too large\n", fasthttp.StatusRequestHeaderFieldsTooLarge)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		ctx.Error("request body too large\n", fasthttp.StatusRequestEntityTooLarge)
	case errors.As(err, &ne) && ne.Timeout():
		ctx.Error("request timeout\n", fasthttp.StatusRequestTimeout)
	default:
		ctx.Error("bad request\n", fasthttp.StatusBadRequest)
	}
}

// refuseRequest answers a request the front will not forward, and closes
// the connection: what is left of the request on it cannot be trusted.
func refuseRequest(ctx *fasthttp.RequestCtx, r *refusal) {
	ctx.SetConnectionClose()
	ctx.Error(r.msg, r.status)
}

// record is one request as the front accounts for it: the lane's Outcome,
// the mapping that sent it to its lane, and, while the access log is on,
// the access log's own fields.
type record struct {
	lane.Outcome
	ref mapping.Ref // the zero Ref: nothing matched (the default lane)
	// For the access log, set only while it is on: the request's
	// protocol, Host, User-Agent, Referer and query string (when
	// access_log_query), each cut to a bound. Valid as Method and Path are.
	Proto                           string
	Host, UserAgent, Referer, Query []byte
}

// describe records what the metrics and the access log say of ctx's
// request: method, path, client and, while the access log is on, its
// fields.
func (o *record) describe(ctx *fasthttp.RequestCtx, snap *Snapshot) {
	o.Method, o.Path = ctx.Method(), ctx.Path()
	o.Client, _ = netip.AddrFromSlice(ctx.RemoteIP())
	o.Client = o.Client.Unmap()
	if snap.Access != nil {
		captureAccess(ctx, o, snap.Config.Log.AccessQuery)
	}
}

// request is the front's state of one request, until serve returns.
type request struct {
	body   reqBody // read before the lane is chosen (readBody)
	ctx    *fasthttp.RequestCtx
	snap   *Snapshot // as of the classification
	lane   Lane
	slot   Slot // held: from Acquire until finish (or the spool's pump) takes it
	direct bool
	start  time.Time
	rec    record
}

// requests holds the front's per-request state: it would escape (the lane
// keeps &rec.Outcome from Begin to Release, and the body's reader ends up
// in the request's body stream).
var requests = sync.Pool{New: func() any { return new(request) }}

// serve checks and prepares a request, reads its body, and classifies it
// into a lane; dispatch gets it a slot and its answer, and respond sends
// that answer on. A request refused before it has a lane (prepare,
// readBody) is answered at once and has only its access log line (lane
// "-"); every other ends in finish, once: in dispatch, in respond, in the
// spool's pump, or here when a panic cuts it short.
func (f *Front) serve(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	rq := requests.Get().(*request)
	defer f.done(rq)
	req := &ctx.Request
	if req.Header.ConnectionClose() {
		ctx.SetConnectionClose()
	}
	fw := f.bufs.fwd.Get().(*forward)
	r := prepare(req, ctx.RemoteIP(), fw)
	f.bufs.fwd.Put(fw)
	if r != nil {
		refuseRequest(ctx, r)
		f.logRefused(ctx, rq, start)
		return
	}
	// HTTP/1.0 allows a request without Host; the client cannot write one
	// without it (errRequestHostRequired, a 502).
	if len(req.Header.Host()) == 0 {
		host := ctx.LocalAddr().String()
		req.URI().SetHost(host) // Write takes the Host from the parsed URI
		req.Header.SetHost(host)
	}
	if r := f.readBody(req, &rq.body); r != nil {
		refuseRequest(ctx, r)
		f.logRefused(ctx, rq, start)
		return
	}

	snap := f.opt.Snapshot()
	l, ref := snap.match(ctx.Method(), ctx.Path())
	rq.ctx, rq.snap, rq.lane, rq.direct, rq.start = ctx, snap, l, l.Direct(), start
	o := &rq.rec
	o.describe(ctx, snap)
	o.ref = ref
	timeout := l.RequestTimeout()
	if rq.direct {
		app := &snap.Config.App
		http10 := toUpstream(req, app.UnderscoresInHeaders, snap.UpstreamTLS)
		defer fromUpstreamDone(req, http10)
		if app.UpstreamTimeout > 0 {
			timeout = min(timeout, app.UpstreamTimeout)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			f.log.Error("front handler panic", "method", logging.Quote(ctx.Method()), "path", logging.Quote(ctx.Path()), "panic", fmt.Sprint(r))
			ctx.Response.Reset()
			ctx.Error("internal error\n", fasthttp.StatusInternalServerError)
			if rq.slot != nil { // a slot that a panic must not leak
				o.Result, o.Err, o.Status = lane.Broken, fmt.Errorf("panic: %v", r), fasthttp.StatusInternalServerError
				f.end(rq)
			}
		}
	}()
	if resp, small := f.dispatch(rq, timeout); resp != nil {
		f.respond(rq, resp, small)
	}
}

// logRefused writes the access log line of a request refused before it
// had a lane (a smuggling attempt, a body too large or too slow, an
// upgrade): lane "-", as nginx logs its 400s. No lane or metric counts it.
func (f *Front) logRefused(ctx *fasthttp.RequestCtx, rq *request, start time.Time) {
	snap := f.opt.Snapshot()
	if snap.Access == nil {
		return
	}
	o := &rq.rec
	o.describe(ctx, snap)
	o.Result = lane.Refused
	o.Status, o.Bytes, o.Total = ctx.Response.StatusCode(), len(ctx.Response.Body()), time.Since(start)
	snap.Access.log(noLane, o, snap.Config.Log.AccessFormat)
}

// noLane is the lane an access line names for a request that had none.
const noLane = "-"

// done returns rq's body buffer and rq itself, once serve has returned:
// the request, its body included, has been sent, and what a spool still
// needs of it is the spool's own copy.
func (f *Front) done(rq *request) {
	f.releaseBody(&rq.body)
	*rq = request{}
	requests.Put(rq)
}

// end finishes rq with the slot it holds (nil: it got none).
func (f *Front) end(rq *request) {
	s := rq.slot
	rq.slot = nil
	f.finish(rq.lane, s, &rq.rec)
}

// finish ends a request that had a lane, whichever way it ended, with its
// status, bytes and times set: first the lane's own accounting (Release;
// with no slot, the request was refused), then, unless the front sends it
// again (o.Retry), the metrics, the auto_map trace and the access log
// line. Those read the current snapshot: a reload since the request was
// classified may have moved or removed its lane, so the trace goes by the
// lane's name.
func (f *Front) finish(l Lane, s Slot, o *record) {
	if s != nil {
		s.Release(&o.Outcome)
	} else {
		o.Result = lane.Refused
	}
	if f.opt.Ended != nil {
		f.opt.Ended(l)
	}
	if o.Retry {
		return // the retry is the request; this attempt only fed the lane
	}
	snap := f.opt.Snapshot()
	name := l.Name()
	if f.opt.Observe != nil {
		f.opt.Observe(name, &o.Outcome)
	}
	if o.Result != lane.Refused {
		snap.Table.Observe(o.ref, name, o.Method, o.Path, o.Filter+o.Run, o.Result == lane.HardTimeout)
	}
	if snap.Access != nil {
		snap.Access.log(name, o, snap.Config.Log.AccessFormat)
	}
}

// retryable says a request of this method may be sent again to another
// worker after its worker died without answering.
func (f *Front) retryable(method []byte) bool { return f.cfg.RetryMethods.HasBytes(method) }
