package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Scenarios 8 (slowreaders, here) and 9 (uploads, uploads.go), hostile
// clients, in upstream mode against the bench's origin: clients that never
// read a big response, and big uploads.
// What counts is whether ordinary requests still get through, and how much
// each lanes process grows (VmHWM, the kernel's high-water mark of its
// resident size, against its VmRSS before).

const (
	hostileWorkers     = 2
	hostileConcurrency = 16
	ordinaryRate       = 20.0
)

// hostileConfig is the lanesd both hostile-client scenarios measure.
func hostileConfig(origin, extra string) string {
	return configHeader + extra + fmt.Sprintf("\napp {\n  upstream = %q\n}\n", "http://"+origin) +
		laneBlock("default", hostileWorkers, hostileConcurrency,
			"  max_queue       = 100\n  queue_timeout   = \"5s\"\n  request_timeout = \"15s\"\n")
}

func (b *bench) slowReaders(ctx context.Context) (func(io.Writer), error) {
	origin, err := b.startOrigin()
	if err != nil {
		return nil, err
	}
	defer origin.Stop()
	l, err := b.startReady("lanesd (slow readers)", hostileConfig(origin.addr, ""), lanesdOpts{}, "/", len(originBody))
	if err != nil {
		return nil, err
	}
	defer l.Stop()
	before, err := memSnapshot(l)
	if err != nil {
		return nil, err
	}
	b.progress("slow readers: %d clients never read 20 MB; %.0f ordinary req/s for %s", b.opt.slowReaders, ordinaryRate, b.opt.slowTime)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range b.opt.slowReaders {
		c, err := net.DialTimeout("tcp", l.addr, 5*time.Second)
		if err != nil {
			return nil, err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(4 << 10)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /big?mb=20 HTTP/1.1\r\nHost: bench\r\n\r\n"); err != nil {
			return nil, err
		}
	}
	time.Sleep(time.Second) // let the responses fill every buffer on the way
	st, _ := l.status()
	res := openLoop{addr: l.addr, classes: []class{{name: "ordinary", path: "/", rate: ordinaryRate}},
		warmup: 0, measure: b.opt.slowTime, grace: 5 * time.Second}.run(ctx)[0]
	st2, _ := l.status()
	after, err := memSnapshot(l)
	if err != nil {
		return nil, err
	}
	procs := memGrowth(before, after)
	l.log.mark()
	return func(w io.Writer) {
		fmt.Fprintf(w, "8. SLOW READERS: %d clients ask for a 20 MB response and never read it (4 KB receive buffers)\n\n", b.opt.slowReaders)
		fmt.Fprintf(w, "   upstream mode, lane default %d workers × concurrency %d, request_timeout 15s, queue_timeout 5s;\n", hostileWorkers, hostileConcurrency)
		fmt.Fprintf(w, "   1 s after they connect, ordinary GET / (100 B) at %.0f req/s for %s, open loop, the slow readers still there.\n\n", ordinaryRate, b.opt.slowTime)
		var t table
		t.row("ordinary requests", "sent", "ok", "503", "errors", "unfin", "p50", "p99")
		t.row("GET / next to the slow readers", strconv.Itoa(res.sent), strconv.Itoa(res.ok), strconv.Itoa(res.rejected),
			strconv.Itoa(res.failed), strconv.Itoa(res.unfinished), res.lat.pctString(50), res.lat.pctString(99))
		t.write(w, "   ")
		fmt.Fprintln(w)
		if ln := st.Lane("default"); ln != nil {
			fmt.Fprintf(w, "   lane default when the ordinary requests began: %d in flight, %d queued (of %d slots)\n",
				ln.Inflight, ln.Queued, hostileWorkers*hostileConcurrency)
		}
		if ln := st2.Lane("default"); ln != nil {
			fmt.Fprintf(w, "   and when they ended: %d in flight, %d queued, %d timeouts, %d killed\n", ln.Inflight, ln.Queued, ln.Timeouts, ln.Killed)
		}
		fmt.Fprintf(w, "   target: ordinary requests all answered 200: %d of %d → %s\n", res.ok, res.sent, verdict(res.sent > 0 && res.ok == res.sent))
		printMem(w, procs)
		if res.firstErr != "" {
			fmt.Fprintf(w, "   note: first error: %s\n", res.firstErr)
		}
		for _, n := range lanesdNotes(l) {
			fmt.Fprintf(w, "   note: %s\n", n)
		}
		fmt.Fprintln(w)
	}, ctx.Err()
}
