package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// Scenario 16, pythroughput (gunicorn.go has what the Python scenarios
// share).

const pyTPHeading = "16. THROUGHPUT, PYTHON: a trivial WSGI endpoint (GET /fast, 100 bytes), closed loop"

func (b *bench) pyThroughput(ctx context.Context) (func(io.Writer), error) {
	if why := b.pySkip(); why != "" {
		return skipped(pyTPHeading, why), nil
	}
	if b.nginx == "" {
		return skipped(pyTPHeading, "skipped: nginx not installed (apt-get install nginx-light)"), nil
	}
	dir, err := b.wsgiDir()
	if err != nil {
		return nil, err
	}
	n := b.opt.pyWorkers
	path := pyHangFast.path

	// nginx in front of gunicorn on a unix socket, as gunicorn's docs
	// deploy it. The socket's directory is open to nginx's workers (nobody
	// when run as root); gunicorn creates the socket with --umask 0.
	sockDir, err := os.MkdirTemp(b.tmp, "gunicorn-")
	if err != nil {
		return nil, err
	}
	_ = os.Chmod(b.tmp, 0o711)
	_ = os.Chmod(sockDir, 0o755)
	sock := filepath.Join(sockDir, "gunicorn.sock")

	rows := []tpRow{
		{name: fmt.Sprintf("%s → gunicorn --workers %d (sync, unix socket)", nginxVersion(b.nginx), n)},
		{name: fmt.Sprintf("lanes, %d exec workers: gunicorn --workers 1 (sync), concurrency 1", n)},
		{name: fmt.Sprintf("gunicorn --workers %d alone on a port (reference, no proxy)", n)},
	}
	addrs := make([]string, len(rows))
	g, err := b.startGunicorn(fmt.Sprintf("gunicorn --workers %d (behind nginx)", n), "unix:"+sock, "", "--workers", strconv.Itoa(n))
	if err == nil {
		defer g.Stop()
		var ng *server
		ng, err = b.startNginx(b.nginx, "unix:"+sock)
		if err == nil {
			defer ng.Stop()
			err = probe(ng.addr, path, len(originBody))
		}
		if err == nil {
			addrs[0] = ng.addr
		}
	}
	rows[0].err = err

	conf := configHeader + laneBlock("default", n, 1,
		execLane(b.gunicornArgv(dir, "--workers", "1"), "  max_queue       = 1000\n"))
	var notes []string
	l, err := b.startReady("lanesd (pythroughput, exec)", conf, lanesdOpts{}, path, len(originBody))
	if err == nil {
		defer l.Stop()
		addrs[1] = l.addr
		for i, s := range []string{"nginx", "lanes"} {
			if addrs[i] != "" && closesConn(addrs[i], path) {
				notes = append(notes, s+" answered with Connection: close: each client connection carries one request, "+
					"and wrk reconnects for every one")
			}
		}
	}
	rows[1].err = err

	direct, err := b.startGunicorn(fmt.Sprintf("gunicorn --workers %d (direct)", n), "", path, "--workers", strconv.Itoa(n))
	if err == nil {
		defer direct.Stop()
		addrs[2] = direct.addr
	}
	rows[2].err = err

	for round := 1; round <= b.opt.tpRounds && ctx.Err() == nil; round++ {
		for i, addr := range addrs {
			if addr == "" || rows[i].err != nil || ctx.Err() != nil {
				continue
			}
			b.progress("pythroughput round %d/%d, %s: %s warm-up + %s", round, b.opt.tpRounds, rows[i].name, b.opt.tpWarmup, b.opt.tpMeasure)
			if _, err := b.closedPath(ctx, addr, path, b.opt.tpWarmup); err != nil {
				rows[i].err = err
				continue
			}
			tp, err := b.closedPath(ctx, addr, path, b.opt.tpMeasure)
			if err != nil {
				rows[i].err = err
				continue
			}
			rows[i].rounds = append(rows[i].rounds, tp)
		}
	}
	if l != nil {
		l.log.mark()
		l.Stop()
		notes = append(notes, lanesdNotes(l)...)
	}
	var failed error
	for _, r := range rows {
		if r.err != nil && failed == nil {
			failed = r.err
		}
	}
	return func(w io.Writer) {
		fmt.Fprintf(w, "%s\n\n", pyTPHeading)
		fmt.Fprintf(w, "   generator: %s; app: bench/testdata/wsgi_app.py, %s\n", b.generatorName(), pythonVersion(b.opt.python))
		fmt.Fprintf(w, "   %d rounds, targets alternating, each %s warm-up + %s measured; median round shown.\n",
			b.opt.tpRounds, b.opt.tpWarmup, b.opt.tpMeasure)
		fmt.Fprintf(w, "   nginx: the bench's proxy config (workers auto, upstream keepalive 64); gunicorn's sync workers\n")
		fmt.Fprintf(w, "   close every connection after one request, behind nginx and behind lanes alike.\n\n")
		var t table
		t.row("target", "req/s", "rounds min–max", "p50", "p99", "errors")
		rps := make([]float64, len(rows))
		for i, row := range rows {
			if row.err != nil || len(row.rounds) == 0 {
				t.row(row.name, "failed (below)")
				continue
			}
			m := row.median()
			lo, hi := row.spread()
			errs := 0
			for _, x := range row.rounds {
				errs += x.errors
			}
			rps[i] = m.rps
			t.row(row.name, fmt.Sprintf("%.0f", m.rps), fmt.Sprintf("%.0f–%.0f", lo, hi), fmtDur(m.p50), fmtDur(m.p99), strconv.Itoa(errs))
		}
		t.write(w, "   ")
		fmt.Fprintln(w)
		if rps[0] > 0 && rps[1] > 0 {
			fmt.Fprintf(w, "   lanes / nginx: %s   target ≥ 1.00× → %s\n", ratio(rps[1], rps[0]), verdict(rps[1] >= rps[0]))
		} else {
			fmt.Fprintf(w, "   lanes / nginx: -   (not both measured)\n")
		}
		if rps[2] > 0 {
			fmt.Fprintf(w, "   nginx / gunicorn alone: %s, lanes / gunicorn alone: %s\n", ratio(rps[0], rps[2]), ratio(rps[1], rps[2]))
		}
		for _, row := range rows {
			if row.err != nil {
				fmt.Fprintf(w, "   error, %s: %v\n", row.name, row.err)
			}
		}
		for _, n := range notes {
			fmt.Fprintf(w, "   note: %s\n", n)
		}
		fmt.Fprintln(w)
	}, cmpErr(failed, ctx.Err())
}

// closesConn reports whether a GET of path on addr is answered with
// Connection: close, which a proxy in front of workers that close every
// connection (gunicorn's sync workers) should not pass on to its clients.
func closesConn(addr, path string) bool {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + path)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		return false
	}
	return resp.ConnectionClose()
}

// closedPath runs the chosen closed-loop generator on one path.
func (b *bench) closedPath(ctx context.Context, addr, path string, d time.Duration) (throughput, error) {
	if b.wrk != nil {
		return b.wrk.run(b, addr, path, d)
	}
	if ctx.Err() != nil {
		return throughput{}, ctx.Err()
	}
	return closedLoop(ctx, addr, path, b.opt.conns, d), nil
}
