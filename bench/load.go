package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// The load generators. Both keep connections alive, as browsers and
// proxies in front of lanes do.
//
//   - openLoop sends each class of request at a constant rate whatever the
//     server does, and counts a request's latency from the moment it was
//     due, not the moment it was sent: a server that stalls sees the
//     requests pile up as a real audience would (no coordinated omission).
//   - closedLoop (and wrk, preferred when installed) keeps N connections
//     busy, one request at a time on each: the most requests per second
//     the target can answer.

// maxOpenConns caps the connections of an open-loop run: every request in
// flight holds one, and an overloaded target holds many.
const maxOpenConns = 16 << 10

// class is one kind of request sent at a constant rate.
type class struct {
	name string
	path string  // request target, e.g. "/demo/sleep?ms=2"
	rate float64 // requests per second
}

// classResult is what one class got in the measured window.
type classResult struct {
	lat        dist // from due: answered with 200, and unfinished (censored) requests
	svc        dist // from send: answered with 200 only
	sent       int
	ok         int
	rejected   int // 503: queue full or queue timeout
	failed     int // other statuses and transport errors
	unfinished int // no answer by the cut-off
	firstErr   string
	// events are every counted request in the order answered, for the
	// scenarios that split a run by time (auto_map, drain, kills).
	events []event
}

// merge adds o's requests to r's, for a run measured in rounds.
func (r *classResult) merge(o *classResult) {
	r.lat.merge(&o.lat)
	r.svc.merge(&o.svc)
	r.sent += o.sent
	r.ok += o.ok
	r.rejected += o.rejected
	r.failed += o.failed
	r.unfinished += o.unfinished
	if r.firstErr == "" {
		r.firstErr = o.firstErr
	}
	r.events = append(r.events, o.events...)
}

// event is one request of an open-loop run.
type event struct {
	due    time.Time
	lat    time.Duration // from due; to the cut-off when unfinished
	status int           // 0: transport error or unfinished
	cut    bool          // unfinished at the cut-off
	err    string
}

// eventDist is the latency distribution of the events that answered 2xx
// or were unfinished (censored), as classResult.lat counts them.
func eventDist(evs []event, keep func(event) bool) *dist {
	d := &dist{}
	for _, e := range evs {
		if keep != nil && !keep(e) {
			continue
		}
		switch {
		case e.ok():
			d.add(e.lat, false)
		case e.cut:
			d.add(e.lat, true)
		}
	}
	return d
}

// okStatus reports whether e got a 2xx.
func (e event) ok() bool { return e.status >= 200 && e.status < 300 }

// openLoop is one constant-arrival run against addr.
type openLoop struct {
	addr    string
	classes []class
	warmup  time.Duration // sent but not counted
	measure time.Duration // requests due in this window are counted
	grace   time.Duration // how long past the window answers are awaited
}

// run sends the classes' requests and returns one result per class.
// Requests still unanswered at the cut-off (end of window + grace) count as
// unfinished and enter the latency figures as lower bounds.
func (o openLoop) run(ctx context.Context) []*classResult {
	client := &fasthttp.HostClient{
		Addr:                      o.addr,
		MaxConns:                  maxOpenConns,
		MaxIdemponentCallAttempts: 1,
		NoDefaultUserAgentHeader:  true,
	}
	defer client.CloseIdleConnections()

	t0 := time.Now().Add(10 * time.Millisecond)
	from := t0.Add(o.warmup)
	end := from.Add(o.measure)
	cutoff := end.Add(o.grace)

	results := make([]*classResult, len(o.classes))
	var wg sync.WaitGroup
	for i, c := range o.classes {
		r := &classResult{}
		results[i] = r
		wg.Go(func() { o.schedule(ctx, client, c, r, t0, from, end, cutoff) })
	}
	wg.Wait()
	return results
}

// schedule sends class c's requests, the i-th due at t0 + i/rate, each on
// a goroutine of its own so that a slow answer never delays the next send.
func (o openLoop) schedule(ctx context.Context, client *fasthttp.HostClient, c class, r *classResult,
	t0, from, end, cutoff time.Time) {
	uri := "http://" + o.addr + c.path
	interval := float64(time.Second) / c.rate
	var (
		mu       sync.Mutex // guards r
		inflight sync.WaitGroup
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := 0; ; i++ {
		due := t0.Add(time.Duration(float64(i) * interval))
		if !due.Before(end) {
			break
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				inflight.Wait()
				return
			}
		}
		counted := !due.Before(from)
		inflight.Go(func() {
			sent := time.Now()
			status, err := send(client, uri, cutoff)
			now := time.Now()
			if !counted {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			r.sent++
			ev := event{due: due, lat: now.Sub(due), status: status}
			if err != nil {
				ev.status, ev.err = 0, err.Error()
			}
			if errors.Is(err, fasthttp.ErrTimeout) && !now.Before(cutoff) {
				ev.lat, ev.cut = cutoff.Sub(due), true
			}
			r.events = append(r.events, ev)
			switch {
			case err == nil && status == fasthttp.StatusOK:
				r.ok++
				r.lat.add(now.Sub(due), false)
				r.svc.add(now.Sub(sent), false)
			case err == nil && status == fasthttp.StatusServiceUnavailable:
				r.rejected++
			case errors.Is(err, fasthttp.ErrTimeout) && !now.Before(cutoff):
				r.unfinished++
				r.lat.add(cutoff.Sub(due), true)
			default:
				r.failed++
				noteFailure(&r.firstErr, status, err)
			}
		})
	}
	inflight.Wait()
}

// send does one GET with the given deadline and drops the body.
func send(client *fasthttp.HostClient, uri string, deadline time.Time) (int, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(uri)
	err := client.DoDeadline(req, resp, deadline)
	return resp.StatusCode(), err
}

// throughput is the result of a closed-loop run.
type throughput struct {
	rps      float64
	p50, p99 time.Duration
	errors   int // non-200 answers and transport errors
	requests int
}

// closedLoop keeps conns connections busy against addr for d and counts
// what comes back. It is the fallback when wrk is not installed.
func closedLoop(ctx context.Context, addr, path string, conns int, d time.Duration) throughput {
	client := &fasthttp.HostClient{
		Addr:                      addr,
		MaxConns:                  conns,
		MaxIdemponentCallAttempts: 1,
		NoDefaultUserAgentHeader:  true,
	}
	defer client.CloseIdleConnections()
	uri := "http://" + addr + path
	start := time.Now()
	end := start.Add(d)
	lats := make([]dist, conns)
	errs := make([]int, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(uri)
			for ctx.Err() == nil {
				t := time.Now()
				if !t.Before(end) {
					return
				}
				err := client.DoDeadline(req, resp, t.Add(10*time.Second))
				if err != nil || resp.StatusCode() != fasthttp.StatusOK {
					errs[i]++
					continue
				}
				lats[i].add(time.Since(t), false)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all dist
	tp := throughput{}
	for i := range conns {
		all.merge(&lats[i])
		tp.errors += errs[i]
	}
	tp.requests = all.n() + tp.errors
	tp.rps = float64(all.n()) / elapsed.Seconds()
	p50, _ := all.pct(50)
	p99, _ := all.pct(99)
	tp.p50, tp.p99 = p50.d, p99.d
	return tp
}

// wrk runs the wrk load generator, the same way against every target.
type wrk struct {
	bin     string
	threads int
	conns   int
}

// run runs wrk against addr for d and parses its report.
func (w wrk) run(b *bench, addr, path string, d time.Duration) (throughput, error) {
	secs := max(int(d.Round(time.Second)/time.Second), 1)
	log := &logTail{}
	var out bytes.Buffer
	cmd := exec.Command(w.bin, "-t", strconv.Itoa(w.threads), "-c", strconv.Itoa(w.conns),
		"-d", strconv.Itoa(secs)+"s", "--latency", "http://"+addr+path)
	cmd.Stdout = &out
	cmd.Stderr = log
	p, err := b.kids.start("wrk", cmd, syscall.SIGINT, 2*time.Second)
	if err != nil {
		return throughput{}, err
	}
	<-p.Done()
	if p.Err() != nil {
		return throughput{}, startupFailure("wrk", p.Err(), log)
	}
	return parseWrk(out.String())
}

var (
	wrkRPS     = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkReqs    = regexp.MustCompile(`(?m)^\s*(\d+) requests in`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkNon2xx  = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSockErr = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// parseWrk reads the figures the bench reports from wrk's output.
func parseWrk(s string) (throughput, error) {
	var tp throughput
	m := wrkRPS.FindStringSubmatch(s)
	if m == nil {
		return tp, fmt.Errorf("wrk: no Requests/sec in its output:\n%s", indent(strings.TrimSpace(s), "    "))
	}
	tp.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkReqs.FindStringSubmatch(s); m != nil {
		tp.requests, _ = strconv.Atoi(m[1])
	}
	for _, m := range wrkPct.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9}[m[3]]
		d := time.Duration(v * unit)
		if m[1] == "50" {
			tp.p50 = d
		} else {
			tp.p99 = d
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		tp.errors += n
	}
	if m := wrkSockErr.FindStringSubmatch(s); m != nil {
		for _, x := range m[1:] {
			n, _ := strconv.Atoi(x)
			tp.errors += n
		}
	}
	return tp, nil
}

// wrkVersion returns e.g. "wrk 4.1.0".
func wrkVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	line, _, _ := bufio.NewReader(bytes.NewReader(out)).ReadLine()
	f := strings.Fields(string(line))
	if len(f) >= 2 {
		// Debian's says "debian/4.1.0-3+b2".
		v := strings.TrimPrefix(f[1], "debian/")
		v, _, _ = strings.Cut(v, "-")
		return f[0] + " " + v
	}
	return "wrk"
}
