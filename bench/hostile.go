package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Scenarios 8 and 9, hostile clients, in upstream mode against the
// bench's origin: clients that never read a big response, and big uploads.
// What counts is whether ordinary requests still get through, and how much
// each lanes process grows (VmHWM, the kernel's high-water mark of its
// resident size, against its VmRSS before).

const (
	hostileWorkers     = 2
	hostileConcurrency = 16
	ordinaryRate       = 20.0
)

// procMem is one process's memory across a scenario.
type procMem struct {
	role   string // "front" or "worker"
	pid    int
	before int64   // VmRSS before; 0 when the process is new
	after  memInfo // at the end
}

func (p procMem) growth() int64 { return p.after.hwm - p.before }

// memSnapshot returns lanesd's own and its workers' memory.
func memSnapshot(l *server) ([]procMem, error) {
	st, err := l.status()
	if err != nil {
		return nil, err
	}
	out := []procMem{{role: "front", pid: l.PID}}
	for _, pid := range workerPIDs(st, "default") {
		out = append(out, procMem{role: "worker", pid: pid})
	}
	for i := range out {
		m, err := readMem(out[i].pid)
		if err != nil {
			return nil, err
		}
		out[i].after = m
	}
	return out, nil
}

// memGrowth pairs a snapshot before with one after.
func memGrowth(before, after []procMem) []procMem {
	was := map[int]int64{}
	for _, p := range before {
		was[p.pid] = p.after.rss
	}
	for i := range after {
		after[i].before = was[after[i].pid]
	}
	return after
}

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

func (b *bench) uploads(ctx context.Context) (func(io.Writer), error) {
	origin, err := b.startOrigin()
	if err != nil {
		return nil, err
	}
	defer origin.Stop()
	size := int64(b.opt.uploadMB) << 20
	front := fmt.Sprintf("\nfront {\n  max_body_size = \"%dMB\"\n}\n", b.opt.uploadMB+1)
	l, err := b.startReady("lanesd (uploads)", hostileConfig(origin.addr, front), lanesdOpts{}, "/", len(originBody))
	if err != nil {
		return nil, err
	}
	defer l.Stop()
	before, err := memSnapshot(l)
	if err != nil {
		return nil, err
	}
	b.progress("uploads: %d × %d MB in parallel to the origin's sink", b.opt.uploads, b.opt.uploadMB)
	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{MaxConnsPerHost: b.opt.uploads}}
	var (
		mu       sync.Mutex
		ok       int
		failures []string
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range b.opt.uploads {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, "POST", "http://"+l.addr+"/sink", &zeros{n: size})
			if err == nil {
				req.ContentLength = size
				req.Header.Set("Content-Type", "application/octet-stream")
				var resp *http.Response
				if resp, err = client.Do(req); err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					got := strings.TrimSpace(string(body))
					if resp.StatusCode != 200 || got != strconv.FormatInt(size, 10) {
						err = fmt.Errorf("status %d, origin got %.80q", resp.StatusCode, got)
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, err.Error())
			} else {
				ok++
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	after, err := memSnapshot(l)
	if err != nil {
		return nil, err
	}
	procs := memGrowth(before, after)
	l.log.mark()
	return func(w io.Writer) {
		fmt.Fprintf(w, "9. BIG UPLOADS: %d parallel uploads of %d MB through lanes to a sink upstream\n\n", b.opt.uploads, b.opt.uploadMB)
		fmt.Fprintf(w, "   upstream mode, lane default %d workers × concurrency %d, front max_body_size %d MB; the origin reads\n", hostileWorkers, hostileConcurrency, b.opt.uploadMB+1)
		fmt.Fprintf(w, "   each body to its end and answers its length; Go net/http client, Content-Length set.\n\n")
		total := float64(int64(b.opt.uploads)*size) / (1 << 20)
		fmt.Fprintf(w, "   %d of %d uploads complete in %s (%.0f MB/s through lanes)\n", ok, b.opt.uploads, took.Round(10*time.Millisecond), total/took.Seconds())
		sort.Strings(failures)
		for i, f := range failures {
			if i == 3 {
				fmt.Fprintf(w, "   … %d more failures\n", len(failures)-3)
				break
			}
			fmt.Fprintf(w, "   failed: %s\n", f)
		}
		printMem(w, procs)
		for _, n := range lanesdNotes(l) {
			fmt.Fprintf(w, "   note: %s\n", n)
		}
		fmt.Fprintln(w)
	}, ctx.Err()
}

// printMem writes each process's growth and the ≤ 64 MB target.
func printMem(w io.Writer, procs []procMem) {
	worst := printMemTable(w, procs)
	fmt.Fprintf(w, "\n   target: no process grows by more than 64 MB: largest %s → %s\n", fmtMB(worst), verdict(worst <= 64<<20))
}

// printMemTable writes each process's growth and returns the largest.
func printMemTable(w io.Writer, procs []procMem) int64 {
	fmt.Fprintf(w, "\n   memory (VmRSS before, VmHWM = peak, VmRSS after; growth = peak − before):\n\n")
	var t table
	t.row("process", "pid", "RSS before", "peak", "RSS after", "growth")
	worst := int64(0)
	for _, p := range procs {
		before := fmtMB(p.before)
		if p.before == 0 {
			before = "(new)"
		}
		t.row(p.role, strconv.Itoa(p.pid), before, fmtMB(p.after.hwm), fmtMB(p.after.rss), fmtMB(p.growth()))
		worst = max(worst, p.growth())
	}
	t.write(w, "   ")
	return worst
}
