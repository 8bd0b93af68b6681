package front

import (
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/supervisor/lane"
)

// respond sends the answer dispatch got on to the client: its header
// (an upstream's or an exec worker's filtered as a proxy must; the
// built-in worker's as it is, less its filter time), the debug headers,
// and its body. A body read whole already (small), or none, ends the
// request here; a larger one goes through a spool, which frees the worker
// as soon as it has sent everything, and whose pump finishes the request.
func (f *Front) respond(rq *request, resp *fasthttp.Response, small bool) {
	ctx, o := rq.ctx, &rq.rec
	if rq.direct || rq.slot.Exec() {
		// A program we did not write (or the upstream itself): only its
		// end-to-end headers; its Connection: close (gunicorn's sync
		// workers send it on every answer) is about its own connection
		// and would make every client reconnect.
		fromUpstream(&ctx.Response.Header, resp)
	} else {
		if v := resp.Header.Peek(shared.HeaderFilterTime); len(v) > 0 {
			if us, err := strconv.ParseInt(string(v), 10, 64); err == nil && us > 0 {
				o.Filter = time.Duration(us) * time.Microsecond
				o.Run -= min(o.Filter, o.Run)
			}
			resp.Header.Del(shared.HeaderFilterTime)
		}
		resp.Header.CopyTo(&ctx.Response.Header)
	}
	o.Total = time.Since(rq.start)
	if rq.snap.Config.DebugHeaders {
		ctx.Response.Header.Set("X-Lane", rq.lane.Name())
		var buf [128]byte
		ctx.Response.Header.SetBytesV("Server-Timing", appendServerTiming(buf[:0], &o.Outcome))
	}
	body := resp.BodyStream()
	if small || body == nil { // whole body read, or none (HEAD, 204, 304)
		fasthttp.ReleaseResponse(resp)
		o.Status, o.Bytes = ctx.Response.StatusCode(), len(ctx.Response.Body())
		f.end(rq)
		return
	}
	sp := spoolPool.Get().(*spool)
	sp.f, sp.lane, sp.slot, sp.resp, sp.r, sp.start = f, rq.lane, rq.slot, resp, body, rq.start
	sp.rec = *o
	sp.deadline = o.Deadline
	sp.rec.Status = resp.StatusCode()
	sp.method = append(sp.method[:0], ctx.Method()...)
	sp.path = append(sp.path[:0], ctx.Path()...)
	sp.rec.Method, sp.rec.Path = sp.method, sp.path
	sp.access = keepAccess(sp.access, &sp.rec)
	rq.slot.Handoff(&o.Outcome, &sp.rec.Outcome)
	sp.mem = f.bufs.resp.Get().(*[]byte)
	// The pump finishes the request; the front server writes the spool
	// after serve returns and closes it when done.
	rq.slot = nil
	n := resp.Header.ContentLength()
	if rq.direct && n < -1 {
		n = -1 // an upstream body that ends with its connection goes out chunked
	}
	ctx.Response.SetBodyStream(sp, n)
	go sp.pump()
}

// appendServerTiming appends the Server-Timing header value (milliseconds).
func appendServerTiming(b []byte, o *lane.Outcome) []byte {
	add := func(b []byte, name string, d time.Duration, last bool) []byte {
		b = append(b, name...)
		b = append(b, ";dur="...)
		b = strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', 3, 64)
		if !last {
			b = append(b, ", "...)
		}
		return b
	}
	b = add(b, "queue", o.Queue, false)
	b = add(b, "filter", o.Filter, false)
	b = add(b, "run", o.Run, false)
	return add(b, "total", o.Total, true)
}
