// Package listener wraps the supervisor's TCP listeners so that nothing a
// client does can stop them: Accept retries with a back-off when the process
// (EMFILE) or the system (ENFILE) is out of file descriptors, or the kernel
// out of buffers, instead of returning the error that fasthttp's and
// net/http's Serve treat as the end of the listener; and an optional cap on
// open connections closes the ones past it at once, so that a flood of idle
// connections to one listener cannot take every descriptor of the process.
package listener

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Back-off between Accept attempts while descriptors are exhausted, as
// net/http does it: 5 ms doubling to 1 s.
const (
	minDelay = 5 * time.Millisecond
	maxDelay = time.Second
	// logEvery bounds how often the exhaustion is logged; the lines say how
	// many failures they stand for.
	logEvery = 5 * time.Second
)

// Options configure a Listener.
type Options struct {
	// MaxConns caps the connections open at once; a connection past it is
	// closed as soon as it is accepted. 0: no cap.
	MaxConns int
	// Log receives the rate-limited warnings.
	Log hclog.Logger
	// Name says which listener, in the log ("front", "admin").
	Name string
}

// Listener is a net.Listener that survives descriptor exhaustion.
type Listener struct {
	net.Listener
	opt  Options
	open atomic.Int64

	acceptErrors atomic.Uint64 // temporary Accept failures, each retried
	overCap      atomic.Uint64 // connections closed because MaxConns were open

	mu         sync.Mutex
	lastLog    time.Time
	unreported uint64
	// sleep is time.Sleep; tests replace it.
	sleep func(time.Duration)
}

// Wrap returns l wrapped.
func Wrap(l net.Listener, opt Options) *Listener {
	if opt.Log == nil {
		opt.Log = hclog.NewNullLogger()
	}
	return &Listener{Listener: l, opt: opt, sleep: time.Sleep}
}

// AcceptErrors returns how many Accept calls failed for a temporary reason
// (and were retried).
func (l *Listener) AcceptErrors() uint64 { return l.acceptErrors.Load() }

// OverCap returns how many connections were closed at once because
// MaxConns were already open.
func (l *Listener) OverCap() uint64 { return l.overCap.Load() }

// Open returns the number of connections accepted and not yet closed.
func (l *Listener) Open() int64 { return l.open.Load() }

// Accept waits for the next connection. It returns an error only when the
// listener itself is done (closed); running out of descriptors makes it
// wait and try again.
func (l *Listener) Accept() (net.Conn, error) {
	delay := time.Duration(0)
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !Temporary(err) {
				return nil, err
			}
			l.acceptErrors.Add(1)
			delay = min(max(2*delay, minDelay), maxDelay)
			l.report(err, delay)
			l.sleep(delay)
			continue
		}
		if l.opt.MaxConns > 0 && l.open.Load() >= int64(l.opt.MaxConns) {
			l.overCap.Add(1)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // a reset, not a FIN_WAIT that holds the port
			}
			_ = c.Close()
			l.report(errOverCap, 0)
			continue
		}
		l.open.Add(1)
		return &conn{Conn: c, l: l}, nil
	}
}

var errOverCap = errors.New("connection cap reached; connection closed")

// report logs err at most once per logEvery, with the count of failures
// since the last line.
func (l *Listener) report(err error, delay time.Duration) {
	l.mu.Lock()
	l.unreported++
	now := time.Now()
	if now.Sub(l.lastLog) < logEvery {
		l.mu.Unlock()
		return
	}
	n := l.unreported
	l.unreported = 0
	l.lastLog = now
	l.mu.Unlock()
	args := []any{"listener", l.opt.Name, "error", err, "count", n, "open", l.open.Load()}
	if delay > 0 {
		args = append(args, "retry_in", delay)
	}
	if errors.Is(err, errOverCap) {
		args = append(args, "max_conns", l.opt.MaxConns)
		l.opt.Log.Warn("connections refused", args...)
		return
	}
	l.opt.Log.Warn("accept failed; retrying", args...)
}

// Temporary says an Accept error is one to wait out: descriptors, buffers
// or memory exhausted, or a connection that was aborted before it could be
// accepted.
func Temporary(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout()
	}
	switch errno {
	case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EAGAIN, syscall.EINTR,
		syscall.EPROTO, syscall.EPERM:
		return true
	}
	return false
}

// conn gives its slot back once, when closed.
type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

// Gone says the client of c, a connection this package accepted, has
// closed it or reset it: a non-blocking recv with MSG_PEEK finds the end
// of the stream or an error. Bytes waiting (a pipelined request) are not
// taken and mean the client is still there. nginx checks an upstream
// request's client the same way.
func Gone(c net.Conn) bool {
	if w, ok := c.(*conn); ok {
		c = w.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	_ = raw.Control(func(fd uintptr) {
		var b [1]byte
		for {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EINTR {
				continue
			}
			gone = (err == nil && n == 0) || (err != nil && err != syscall.EAGAIN)
			return
		}
	})
	return gone
}

// ReadFrom keeps the TCP connection's zero-copy path (splice, sendfile)
// reachable through the wrapper.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
