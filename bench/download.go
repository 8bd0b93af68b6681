package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Scenario 13, download: one big response at a time, fetched directly,
// through lanes (upstream mode, the built-in worker as in scenario 2) and
// through nginx (scenario 2's config), the targets alternating round by
// round. What counts is the MB/s each gets, and that no proxy holds the
// response: a process may grow by its buffers, never by the body.

// downloadGrowth is the most a process may grow over the scenario and
// still pass "no growth beyond buffers": lanes' response_buffer (256 KB)
// and read buffers, nginx's proxy_buffers, the Go heap's slack.
const downloadGrowth = 16 << 20

// downloadBuffer is what the client reads the body into.
const downloadBuffer = 256 << 10

// nginxSpillLine is what nginx logs, at warn, for each response it starts
// buffering to a temporary file.
const nginxSpillLine = "buffered to a temporary file"

// dlRow is one target's downloads, one time per round.
type dlRow struct {
	name    string
	addr    string   // "": not measured (see skipped or err)
	log     *logTail // the server's, quoted when a download fails
	took    []time.Duration
	skipped string
	err     error
}

// mbps returns the median, lowest and highest MB/s of the rounds for a
// body of mb MB.
func (r *dlRow) mbps(mb int) (med, lo, hi float64) {
	if len(r.took) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(r.took)
	slices.Sort(s)
	rate := func(d time.Duration) float64 { return float64(mb) / d.Seconds() }
	return rate(s[len(s)/2]), rate(s[len(s)-1]), rate(s[0])
}

// dlDisk is what the proxies wrote to storage over the run: their
// temporary files.
type dlDisk struct {
	lanesFront, nginxWorkers  int64 // write_bytes
	nginxSpills, nginxFetches int   // responses nginx buffered to a file, of those it served
}

func (b *bench) download(ctx context.Context) (func(io.Writer), error) {
	origin, err := b.startOrigin()
	if err != nil {
		return nil, err
	}
	defer origin.Stop()
	l, err := b.startReady("lanesd (download)", b.proxyLanesConfig(origin.addr), lanesdOpts{}, "/", len(originBody))
	if err != nil {
		return nil, err
	}
	defer l.Stop()
	rows := []*dlRow{
		{name: "direct to origin", addr: origin.addr, log: origin.log},
		{name: fmt.Sprintf("lanes (%d workers × concurrency %d)", b.opt.proxyWorkers, b.opt.proxyConc), addr: l.addr, log: l.log},
		{name: "nginx"},
	}
	lanesRow, nginxRow := rows[1], rows[2]
	var (
		ng      *server // nginx, once it answers
		spilled atomic.Int64
	)
	if b.nginx == "" {
		nginxRow.skipped = "nginx not installed (apt-get install nginx-light)"
	} else {
		nginxRow.name = nginxVersion(b.nginx) + " (workers auto, upstream keepalive 64)"
		n, err := b.startNginx(b.nginx, origin.addr)
		if err == nil {
			defer n.Stop()
			err = probe(n.addr, "/", len(originBody))
		}
		if err != nil {
			nginxRow.err = fmt.Errorf("nginx: %w", err)
		} else {
			ng, nginxRow.addr, nginxRow.log = n, n.addr, n.log
			n.log.setWatch(func(line string) {
				if strings.Contains(line, nginxSpillLine) {
					spilled.Add(1)
				}
			})
		}
	}

	// The processes whose memory and disk writes count: lanes' front and
	// workers, nginx's workers (its master only reads the config).
	snapshot := func() ([]procMem, error) {
		procs, err := memSnapshot(l)
		if err != nil {
			return nil, err
		}
		for i := range procs {
			procs[i].role = "lanes " + procs[i].role
		}
		if ng != nil {
			for _, pid := range childPIDs(ng.PID) {
				m, err := readMem(pid)
				if err != nil {
					return nil, err
				}
				procs = append(procs, procMem{role: "nginx worker", pid: pid, after: m})
			}
		}
		return procs, nil
	}
	written := func(procs []procMem) (lanes, nginx int64) {
		for _, p := range procs {
			n, _ := writeBytes(p.pid)
			switch p.role {
			case "lanes front":
				lanes += n
			case "nginx worker":
				nginx += n
			}
		}
		return lanes, nginx
	}
	before, err := snapshot()
	if err != nil {
		return nil, err
	}
	lanesW0, nginxW0 := written(before)

	path := fmt.Sprintf("/big?mb=%d", b.opt.downloadMB)
	size := int64(b.opt.downloadMB) << 20
	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	buf := make([]byte, downloadBuffer)
	for round := 1; round <= b.opt.downloadRounds && ctx.Err() == nil; round++ {
		for _, r := range rows {
			if r.addr == "" || r.err != nil || ctx.Err() != nil {
				continue
			}
			b.progress("download round %d/%d, %s: GET %s", round, b.opt.downloadRounds, r.name, path)
			took, err := fetchDiscard(ctx, client, "http://"+r.addr+path, size, buf)
			if err != nil {
				r.err = err
				if r.log != nil {
					r.err = startupFailure(r.name, err, r.log)
				}
				continue
			}
			r.took = append(r.took, took)
		}
	}

	after, err := snapshot()
	if err != nil {
		return nil, err
	}
	procs := memGrowth(before, after)
	lanesW1, nginxW1 := written(after)
	disk := dlDisk{
		lanesFront: lanesW1 - lanesW0, nginxWorkers: nginxW1 - nginxW0,
		nginxSpills: int(spilled.Load()), nginxFetches: len(nginxRow.took),
	}
	l.log.mark()
	return func(w io.Writer) {
		fmt.Fprintf(w, "13. DOWNLOAD: one %d MB response at a time, direct, through lanes and through nginx\n\n", b.opt.downloadMB)
		fmt.Fprintf(w, "   origin: GET %s, zeros streamed by fasthttp with Content-Length; client: Go net/http,\n", path)
		fmt.Fprintf(w, "   body read into a %d KB buffer and dropped, timed from send to last byte; lanes in upstream\n", downloadBuffer>>10)
		fmt.Fprintf(w, "   mode as in scenario 2; %d rounds, targets alternating; median round shown\n\n", b.opt.downloadRounds)
		var t table
		t.row("target", "MB/s", "rounds min–max", "time")
		rate := map[*dlRow]float64{}
		for _, r := range rows {
			switch {
			case r.skipped != "":
				t.row(r.name, r.skipped)
				continue
			case r.err != nil || len(r.took) == 0:
				t.row(r.name, "failed (below)")
				continue
			}
			med, lo, hi := r.mbps(b.opt.downloadMB)
			rate[r] = med
			t.row(r.name, fmt.Sprintf("%.0f", med), fmt.Sprintf("%.0f–%.0f", lo, hi),
				fmtDur(time.Duration(float64(b.opt.downloadMB)/med*float64(time.Second))))
		}
		t.write(w, "   ")
		fmt.Fprintf(w, "\n   lanes / direct: %s\n", ratio(rate[lanesRow], rate[rows[0]]))
		if rate[nginxRow] > 0 {
			fmt.Fprintf(w, "   lanes / nginx:  %s   target ≥ 0.80× → %s\n", ratio(rate[lanesRow], rate[nginxRow]), verdict(rate[lanesRow] >= 0.8*rate[nginxRow]))
		} else {
			fmt.Fprintf(w, "   lanes / nginx:  -   (nginx not measured)\n")
		}
		for _, r := range rows {
			if r.err != nil {
				fmt.Fprintf(w, "   error, %s: %v\n", r.name, r.err)
			}
		}
		worst := printMemTable(w, procs)
		fmt.Fprintf(w, "\n   target: no growth beyond buffers, i.e. no process grows by more than %d MB: largest %s → %s\n",
			downloadGrowth>>20, fmtMB(worst), verdict(worst <= downloadGrowth))
		fmt.Fprintf(w, "   note: buffering, both at their defaults: nginx runs scenario 2's config, in which proxy_buffering\n")
		fmt.Fprintf(w, "   is on and proxy_max_temp_file_size 1024m: what the client has not taken yet goes from proxy_buffers\n")
		fmt.Fprintf(w, "   (memory) to a temporary file in proxy_temp_path, up to 1 GB, so the origin is never slowed to the\n")
		fmt.Fprintf(w, "   client's pace and the body is never held in memory; lanes does the same (response_buffer 256 KB,\n")
		fmt.Fprintf(w, "   then a temporary file up to max_temp_file, 1 GB).\n")
		fmt.Fprintf(w, "   note: temporary files this run: ")
		if ng != nil {
			fmt.Fprintf(w, "nginx started one for %d of %d responses (its warning %q);\n   ",
				disk.nginxSpills, disk.nginxFetches, nginxSpillLine)
		}
		fmt.Fprintf(w, "storage writes (write_bytes; a page rewritten before writeback counts once): lanes front %s",
			fmtMB(disk.lanesFront))
		if ng != nil {
			fmt.Fprintf(w, ", nginx workers %s", fmtMB(disk.nginxWorkers))
		}
		fmt.Fprintln(w)
		for _, n := range lanesdNotes(l) {
			fmt.Fprintf(w, "   note: %s\n", n)
		}
		fmt.Fprintln(w)
	}, ctx.Err()
}

// fetchDiscard GETs uri, reads the body to its end into buf and drops it,
// and returns the time from the request's send to the body's last byte.
func fetchDiscard(ctx context.Context, client *http.Client, uri string, want int64, buf []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", uri, nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: status %d", req.URL.RequestURI(), resp.StatusCode)
	}
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("GET %s: after %d bytes: %w", req.URL.RequestURI(), n, err)
		}
	}
	took := time.Since(start)
	if n != want {
		return 0, fmt.Errorf("GET %s: %d-byte body, want %d", req.URL.RequestURI(), n, want)
	}
	return took, nil
}
