package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Scenario 9, uploads: see slowreaders.go for the setup both hostile-client
// scenarios share (hostileConfig).

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
