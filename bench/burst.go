package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Scenario 5, burst: an idle lane gets burstFactor times what its
// min_workers can run at once, all at the same moment. With max_workers =
// min_workers the burst can only queue; with room to grow the lane starts
// workers (in parallel when the queue is deep). The queue time comes from
// lanesd itself: the Server-Timing header that debug_headers adds.

const (
	burstMin     = 2
	burstMaxRoom = 20
	burstPath    = "/demo/sleep?ms=200"
	burstIdle    = 2 * time.Second // the lane's idle_timeout: it shrinks back between bursts
)

// burstSetup is one lanesd of the scenario.
type burstSetup struct {
	label    string
	min, max int
	l        *server
	queue    dist
	total    dist
	sent     int
	failed   int
	firstErr string
	peak     int           // most workers seen at once
	idleWait time.Duration // longest wait for the lane to be idle and at min_workers again
}

func (b *bench) burst(ctx context.Context) (func(io.Writer), error) {
	setups := []*burstSetup{
		{label: "max_workers = min_workers", min: burstMin, max: burstMin},
		{label: "room to grow", min: burstMin, max: burstMaxRoom},
	}
	for _, s := range setups {
		cfg := configHeader + "debug_headers = true\n\napp {\n  demo = true\n}\n" +
			fmt.Sprintf("\nlane \"default\" {\n  min_workers     = %d\n  max_workers     = %d\n  concurrency     = 1\n  max_queue       = 1000\n  queue_timeout   = \"30s\"\n  idle_timeout    = %q\n}\n",
				s.min, s.max, burstIdle.String())
		l, err := b.startReady("lanesd (burst "+strconv.Itoa(s.max)+")", cfg, lanesdOpts{}, burstPath, -1)
		if err != nil {
			return nil, err
		}
		defer l.Stop()
		s.l = l
	}
	n := b.opt.burstFactor * burstMin
	for round := 1; round <= b.opt.burstRounds && ctx.Err() == nil; round++ {
		for _, s := range setups {
			b.progress("burst %d/%d, %s: %d requests at once", round, b.opt.burstRounds, s.label, n)
			waited, err := waitIdle(ctx, s.l, s.min, 4*burstIdle+10*time.Second)
			if err != nil {
				return nil, err
			}
			s.idleWait = max(s.idleWait, waited)
			s.fire(ctx, n)
		}
	}
	for _, s := range setups {
		s.l.log.mark()
	}
	return func(w io.Writer) {
		fmt.Fprintf(w, "5. BURST: an idle lane gets %d× its min_workers capacity at once\n\n", b.opt.burstFactor)
		fmt.Fprintf(w, "   %d × GET %s (200 ms) at the same moment, each on its own connection, %d bursts per setup,\n", n, burstPath, b.opt.burstRounds)
		fmt.Fprintf(w, "   setups alternating; before each burst the lane is idle at min_workers (idle_timeout %s).\n", burstIdle)
		fmt.Fprintf(w, "   Queue time is lanesd's own (Server-Timing queue, debug_headers = true).\n\n")
		var t table
		t.row("setup", "workers", "requests", "queue p50", "queue p99", "total p50", "total p99", "peak workers", "errors")
		for _, s := range setups {
			t.row(s.label, fmt.Sprintf("%d–%d", s.min, s.max), strconv.Itoa(s.sent), s.queue.pctString(50), s.queue.pctString(99),
				s.total.pctString(50), s.total.pctString(99), strconv.Itoa(s.peak), strconv.Itoa(s.failed))
		}
		t.write(w, "   ")
		fixed, _ := setups[0].queue.pct(99)
		room, _ := setups[1].queue.pct(99)
		fmt.Fprintf(w, "\n   queue p99, fixed size / room to grow: %s\n", ratio(float64(fixed.d), float64(room.d)))
		for _, s := range setups {
			if s.firstErr != "" {
				fmt.Fprintf(w, "   note, %s: first error: %s\n", s.label, s.firstErr)
			}
			for _, n := range lanesdNotes(s.l) {
				fmt.Fprintf(w, "   note: %s\n", n)
			}
		}
		fmt.Fprintf(w, "   between bursts the grown lane took up to %s to be back at %d workers\n",
			setups[1].idleWait.Round(100*time.Millisecond), burstMin)
		fmt.Fprintln(w)
	}, ctx.Err()
}

// waitIdle waits until l's default lane has nothing queued or in flight and
// exactly min workers, and returns how long that took.
func waitIdle(ctx context.Context, l *server, min int, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		st, err := l.status()
		if err != nil {
			return 0, err
		}
		ln := st.Lane("default")
		if ln != nil && ln.Queued == 0 && ln.Inflight == 0 && len(workerPIDs(st, "default")) == min {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return 0, fmt.Errorf("lane default not idle at %d workers after %s", min, limit)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fire sends n requests at once and records their queue and total times,
// watching the lane's size meanwhile.
func (s *burstSetup) fire(ctx context.Context, n int) {
	client := &fasthttp.HostClient{Addr: s.l.addr, MaxConns: n, MaxIdemponentCallAttempts: 1, NoDefaultUserAgentHeader: true}
	defer client.CloseIdleConnections()
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		for {
			if st, err := s.l.status(); err == nil {
				s.peak = max(s.peak, len(workerPIDs(st, "default")))
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for range n {
		wg.Go(func() {
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + s.l.addr + burstPath)
			<-start
			t := time.Now()
			err := client.DoTimeout(req, resp, 60*time.Second)
			d := time.Since(t)
			mu.Lock()
			defer mu.Unlock()
			s.sent++
			if err != nil || resp.StatusCode() != fasthttp.StatusOK {
				s.failed++
				noteFailure(&s.firstErr, resp.StatusCode(), err)
				return
			}
			s.total.add(d, false)
			if q, ok := serverTiming(resp.Header.Peek("Server-Timing"), "queue"); ok {
				s.queue.add(q, false)
			}
		})
	}
	close(start)
	wg.Wait()
	close(stop)
	watch.Wait()
}

// serverTiming returns the dur of metric name in a Server-Timing value
// such as "queue;dur=1.234, filter;dur=0.000, run;dur=2.1, total;dur=3.4".
func serverTiming(h []byte, name string) (time.Duration, bool) {
	for len(h) > 0 {
		var part []byte
		if i := bytes.IndexByte(h, ','); i >= 0 {
			part, h = h[:i], h[i+1:]
		} else {
			part, h = h, nil
		}
		part = bytes.TrimSpace(part)
		metric, params, _ := bytes.Cut(part, []byte(";"))
		if string(metric) != name {
			continue
		}
		for _, p := range bytes.Split(params, []byte(";")) {
			k, v, ok := bytes.Cut(bytes.TrimSpace(p), []byte("="))
			if ok && string(k) == "dur" {
				ms, err := strconv.ParseFloat(string(v), 64)
				if err != nil {
					return 0, false
				}
				return time.Duration(ms * float64(time.Millisecond)), true
			}
		}
	}
	return 0, false
}
