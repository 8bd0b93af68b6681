package main

import (
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Scenarios 14 to 16: a Python WSGI app (testdata/wsgi_app.py) under
// gunicorn, as a gunicorn site runs today, against the same app run by
// lanes as exec lane workers (one gunicorn, --workers 1, per lane worker,
// handed its socket by socket activation):
//
//	14. pyisolation: the NaviServer table (times ÷ 5) against one gunicorn
//	    pool of 8 sync workers, and against lanes with the slow URL in a
//	    lane of its own (6 + 2 gunicorns);
//	15. pyhang: a 4-thread gunicorn behind lanes in upstream mode, where a
//	    request that hangs holds a thread for good although lanes answers
//	    504, against exec mode, where the 504 kills the gunicorn that ran it;
//	16. pythroughput: a trivial endpoint, nginx in front of N sync
//	    workers against lanes with N gunicorn lane workers.
//
// Each is skipped, with the reason, when gunicorn does not import under
// -python (Debian: apt-get install python3-gunicorn); pythroughput also
// when nginx is missing. Each is in the file of its name; this one holds
// what they share: the app, gunicorn's command line, start and notes.

//go:embed testdata/wsgi_app.py
var wsgiApp []byte

// The request classes of pyisolation: isolation.go's, on the WSGI app's
// paths.
var (
	pyFastClass   = class{name: "fast", path: "/sleep?ms=2", rate: fastClass.rate}
	pyMediumClass = class{name: "medium", path: "/sleep?ms=200", rate: mediumClass.rate}
	pySlowClass   = class{name: "slow", path: "/sleep/slow?ms=1000", rate: slowClass.rate}
)

// pySkip says why the Python scenarios cannot run, "" when they can.
func (b *bench) pySkip() string {
	out, err := exec.Command(b.opt.python, "-c", "import gunicorn").CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			msg = msg[i+1:]
		}
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Sprintf("skipped: %s -c 'import gunicorn' failed (%s); apt-get install python3-gunicorn", b.opt.python, msg)
	}
	return ""
}

// skipped prints a scenario's heading and why it did not run.
func skipped(heading, why string) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprintf(w, "%s\n\n   %s\n\n", heading, why)
	}
}

// wsgiDir writes the WSGI app into the bench's directory, once, and
// returns the directory gunicorn is to chdir to.
func (b *bench) wsgiDir() (string, error) {
	dir := filepath.Join(b.tmp, "wsgi")
	if _, err := os.Stat(filepath.Join(dir, "wsgi_app.py")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "wsgi_app.py"), wsgiApp, 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// gunicornArgv is the command line of one gunicorn serving the WSGI app
// from dir with the given options. A graceful stop waits 2 s for requests
// in flight (gunicorn's default is 30 s: a hung request would hold the
// bench); only warnings and errors are logged.
func (b *bench) gunicornArgv(dir string, opts ...string) []string {
	argv := []string{b.opt.python, "-m", "gunicorn", "--chdir", dir, "--graceful-timeout", "2", "--log-level", "warning"}
	argv = append(argv, opts...)
	return append(argv, "wsgi_app:app")
}

// hclList writes a list of strings in HCL.
func hclList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// laneRange is laneBlock with min and max workers apart.
func laneRange(name string, minW, maxW, concurrency int, extra string, maps ...string) string {
	s := laneBlock(name, maxW, concurrency, extra, maps...)
	return strings.Replace(s, fmt.Sprintf("min_workers     = %d\n", maxW), fmt.Sprintf("min_workers     = %d\n", minW), 1)
}

// execLane is what a lane running argv as exec workers has besides its
// size: gunicorn says READY=1 once its arbiter listens.
func execLane(argv []string, extra string) string {
	return fmt.Sprintf("  exec            = %s\n  ready           = \"notify\"\n  stop_timeout    = \"5s\"\n", hclList(argv)) + extra
}

// startGunicorn runs one gunicorn as a process of its own with opts,
// bound to a loopback port the kernel picked (bind ""), or to bind (a
// unix:PATH), until it accepts. On a port, a probe of probePath must then
// answer 200. A port taken meanwhile by another process makes gunicorn
// give up after its own retries; then another port is tried.
func (b *bench) startGunicorn(name, bind, probePath string, opts ...string) (*server, error) {
	dir, err := b.wsgiDir()
	if err != nil {
		return nil, err
	}
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		addr := bind
		if addr == "" {
			if addr, err = freeAddr(); err != nil {
				return nil, err
			}
		}
		s, err := b.tryGunicorn(name, addr, b.gunicornArgv(dir, append([]string{"--bind", addr}, opts...)...))
		if err != nil {
			last = err
			if bind != "" {
				break
			}
			continue
		}
		if bind == "" && probePath != "" {
			if err := probe(s.addr, probePath, -1); err != nil {
				s.Stop()
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		return s, nil
	}
	return nil, last
}

// tryGunicorn starts gunicorn with argv, bound to addr. SIGTERM: its
// arbiter stops its workers within --graceful-timeout, then kills them;
// past 5 s the bench kills the whole process group.
func (b *bench) tryGunicorn(name, addr string, argv []string) (*server, error) {
	return b.startAccepting(name, exec.Command(argv[0], argv[1:]...), addr)
}

// gunicornNotes says what a gunicorn started by the bench logged.
func gunicornNotes(s *server) []string {
	var notes []string
	if w, e, last := s.log.counts(); w+e > 0 {
		notes = append(notes, fmt.Sprintf("%s logged %d warnings and %d errors; last: %s", s.Name, w, e, last))
	}
	if s.Forced() {
		notes = append(notes, fmt.Sprintf("%s did not stop within %s of SIGTERM and was killed", s.Name, s.Grace()))
	}
	return notes
}

// pythonVersion returns e.g. "Python 3.11.2, gunicorn 20.1.0".
func pythonVersion(bin string) string {
	out, err := exec.Command(bin, "-c", "import sys, gunicorn; print('Python %d.%d.%d, gunicorn %s' % (sys.version_info[:3] + (gunicorn.__version__,)))").Output()
	if err != nil {
		return bin
	}
	return strings.TrimSpace(string(out))
}

// cmpErr returns the first of a and b that is not nil.
func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
