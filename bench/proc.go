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
)

// children owns every process the bench starts, so that each is stopped
// however the bench ends: normally, on an error, or on Ctrl-C.
//
// Each child runs in its own process group (a terminal's Ctrl-C reaches the
// bench alone, which then stops the children in order) with Pdeathsig, so
// a bench that is itself SIGKILLed takes them along.
type children struct {
	mu     sync.Mutex
	procs  []*child
	closed bool
}

// child is one started process.
type child struct {
	name  string
	cmd   *exec.Cmd
	done  chan struct{} // closed once the process is reaped
	err   error         // cmd.Wait's; valid after done
	sig   syscall.Signal
	grace time.Duration

	stopOnce sync.Once
	forced   bool // needed SIGKILL; valid after stop
}

// start starts cmd as a child named name. stop sends it sig, and SIGKILL to
// its whole process group if it has not exited within grace.
func (c *children) start(name string, cmd *exec.Cmd, sig syscall.Signal, grace time.Duration) (*child, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A grandchild holding the child's stderr open must not hang Wait.
	cmd.WaitDelay = 2 * time.Second
	ch := &child{name: name, cmd: cmd, done: make(chan struct{}), sig: sig, grace: grace}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("bench: stopping")
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		ch.err = cmd.Wait()
		close(ch.done)
	}()
	c.procs = append(c.procs, ch)
	return ch, nil
}

// stopAll stops every child still running, the last started first, and
// refuses new ones. Safe to call more than once and from any goroutine.
func (c *children) stopAll() {
	c.mu.Lock()
	c.closed = true
	procs := slices.Clone(c.procs)
	c.mu.Unlock()
	slices.Reverse(procs)
	for _, p := range procs {
		p.stop()
	}
}

// stop ends the process politely, then by force. It returns once the
// process is reaped. Safe to call twice.
func (p *child) stop() {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(p.sig)
		t := time.NewTimer(p.grace)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			p.forced = true
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
}

// exited reports whether the process has ended, and how.
func (p *child) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
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
