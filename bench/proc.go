package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lanes-dev/lanes/internal/lanestest"
)

// children owns every process the bench starts, so that each is stopped
// however the bench ends: normally, on an error, or on Ctrl-C.
//
// Each child runs in its own process group (a terminal's Ctrl-C reaches the
// bench alone, which then stops the children in order) with Pdeathsig, so
// a bench that is itself SIGKILLed takes them along; a child that outlives
// its grace gets SIGKILL with its whole group.
type children struct {
	mu     sync.Mutex
	procs  []*lanestest.Proc
	closed bool
}

// procOptions is how the bench starts and stops a child: sig, then
// SIGKILL to its group after grace.
func procOptions(sig syscall.Signal, grace time.Duration) lanestest.ProcOptions {
	return lanestest.ProcOptions{
		Signal: sig, Grace: grace, KillGroup: true, Pdeathsig: true,
		// A grandchild holding the child's stderr open must not hang Wait.
		WaitDelay: 2 * time.Second,
	}
}

// start starts cmd as a child named name. Its Stop sends it sig, and
// SIGKILL to its whole process group if it has not exited within grace.
func (c *children) start(name string, cmd *exec.Cmd, sig syscall.Signal, grace time.Duration) (*lanestest.Proc, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errStopping
	}
	p, err := lanestest.StartProc(name, cmd, procOptions(sig, grace))
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// launchLanesd starts lanesd as a child (lanestest.Launch), without
// waiting for it to be ready.
func (c *children) launchLanesd(o lanestest.Options, config string) (*lanestest.Lanesd, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errStopping
	}
	l, err := lanestest.Launch(o, config)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, l.Proc)
	return l, nil
}

var errStopping = errors.New("bench: stopping")

// stopAll stops every child still running, the last started first, and
// refuses new ones. Safe to call more than once and from any goroutine.
func (c *children) stopAll() {
	c.mu.Lock()
	c.closed = true
	procs := slices.Clone(c.procs)
	c.mu.Unlock()
	slices.Reverse(procs)
	for _, p := range procs {
		p.Stop()
	}
}

// logTail is an io.Writer for a child's stderr: it hands each line to a
// watcher, counts warnings and errors, and keeps the last lines to quote
// when something goes wrong.
type logTail struct {
	mu       sync.Mutex
	partial  []byte
	lines    []string
	warn     int
	errs     int
	lastWarn string
	marked   bool // counting stopped by mark
	watch    func(line string)
}

const tailLines = 20

func (t *logTail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, b...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		line := string(t.partial[:i])
		t.partial = t.partial[i+1:]
		t.lines = append(t.lines, line)
		if len(t.lines) > tailLines {
			t.lines = t.lines[1:]
		}
		switch {
		case t.marked:
		case strings.Contains(line, "[ERROR]") || strings.Contains(line, "[emerg]") || strings.Contains(line, "[crit]") || strings.Contains(line, "[alert]"):
			t.errs++
			t.lastWarn = line
		case strings.Contains(line, "[WARN]") || strings.Contains(line, "[warn]") || strings.Contains(line, "[error]"):
			t.warn++
			t.lastWarn = line
		}
		if t.watch != nil {
			t.watch(line)
		}
	}
	return len(b), nil
}

// mark stops counting warnings and errors: counts reports those written
// so far.
func (t *logTail) mark() {
	t.mu.Lock()
	t.marked = true
	t.mu.Unlock()
}

// setWatch replaces the function that sees every line written.
func (t *logTail) setWatch(watch func(line string)) {
	t.mu.Lock()
	t.watch = watch
	t.mu.Unlock()
}

// tail returns the last lines written, for an error message.
func (t *logTail) tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// counts returns how many warning and error lines were written, and the
// last of them.
func (t *logTail) counts() (warn, errs int, last string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.warn, t.errs, t.lastWarn
}

var _ io.Writer = (*logTail)(nil)

// startupFailure wraps err with the last lines a child logged.
func startupFailure(name string, err error, log *logTail) error {
	if t := strings.TrimSpace(log.tail()); t != "" {
		return fmt.Errorf("%s: %w; its last output:\n%s", name, err, indent(t, "    "))
	}
	return fmt.Errorf("%s: %w", name, err)
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// selfExe is the bench's own binary, re-executed as the origin server.
func selfExe() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("bench: own executable: %w", err)
	}
	return exe, nil
}
