package lane

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/valyala/fasthttp"
)

// dataConn is one data-plane connection to a worker. It remembers whether
// the worker has closed it, because fasthttp's chunked body reader cannot
// tell a body that ended from one whose worker closed the connection between
// two chunks: both end in io.EOF. Its LocalAddr is the dataConn itself, so
// that a response (Response.LocalAddr) leads back to the connection it came
// on.
//
// It also saves a system call per request. fasthttp's client writes a
// request and at once reads the answer; a plain Read first tries the
// socket, finds nothing (EAGAIN: the worker has not even seen the request
// yet) and only then waits for it. dataConn holds a request's last write
// back and sends it from inside that Read, through the socket's RawConn,
// after Go's poller has been armed for the answer, so the Read waits
// without trying first. That is sound only because the peer is a lanes
// worker, which never sends a byte it was not asked for: nothing can
// already wait on the socket that the armed poller would miss, since the
// answer comes after the request the Read itself sent.
//
// A held write that fails (a worker gone: EPIPE) fails the Read instead
// of the Write, and fasthttp reports any error on an answer's first byte
// as a closed connection; sendFailed keeps the truth for Undelivered.
type dataConn struct {
	net.Conn
	raw syscall.RawConn // nil: writes are never held (not a socket)

	mu   sync.Mutex // held, between the client's goroutine and Close
	held []byte     // the last write, not sent yet
	rd   heldRead   // used by one Read at a time (fasthttp never reads concurrently)

	closed     atomic.Bool // a Read saw EOF or an error: the peer is gone
	sendFailed atomic.Bool // a held write failed: the request was not delivered
}

// maxHeld is the largest write held back for the next Read: a request
// header, or the tail of a small body. Larger writes go out at once.
const maxHeld = 16 << 10

func newDataConn(c net.Conn) *dataConn {
	d := &dataConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			d.raw = raw
			d.rd.c = d
			d.rd.fn = d.rd.callback
		}
	}
	return d
}

func (c *dataConn) Write(p []byte) (int, error) {
	if c.raw == nil {
		return c.Conn.Write(p)
	}
	if err := c.sendHeld(); err != nil {
		return 0, err
	}
	if len(p) > maxHeld {
		return c.Conn.Write(p)
	}
	c.mu.Lock()
	c.held = append(c.held[:0], p...)
	c.mu.Unlock()
	return len(p), nil
}

// takeHeld returns the held write and forgets it; the slice stays valid
// until the next Write.
func (c *dataConn) takeHeld() []byte {
	c.mu.Lock()
	b := c.held
	c.held = c.held[:0]
	c.mu.Unlock()
	return b
}

// sendHeld writes out a held write the ordinary way (two writes in a row).
func (c *dataConn) sendHeld() error {
	b := c.takeHeld()
	if len(b) == 0 {
		return nil
	}
	if _, err := c.Conn.Write(b); err != nil {
		c.sendFailed.Store(true)
		return err
	}
	return nil
}

func (c *dataConn) Read(p []byte) (int, error) {
	n, err := c.read(p)
	if err != nil {
		c.closed.Store(true)
	}
	return n, err
}

func (c *dataConn) read(p []byte) (int, error) {
	held := c.takeHeld()
	if len(held) == 0 || len(p) == 0 {
		return c.Conn.Read(p)
	}
	r := &c.rd
	r.held, r.p, r.n, r.rerr, r.werr, r.written = held, p, 0, nil, nil, false
	err := c.raw.Read(r.fn)
	n, rerr, werr := r.n, r.rerr, r.werr
	if !r.written || werr != nil {
		c.sendFailed.Store(true)
	}
	r.held, r.p = nil, nil
	switch {
	case werr != nil:
		return 0, werr
	case err != nil:
		// A deadline, or the connection closed under the Read: the same
		// errors as net's Read, under its name.
		var oe *net.OpError
		if errors.As(err, &oe) {
			oe.Op = "read"
			return 0, oe
		}
		return 0, err
	case rerr != nil:
		return 0, c.opError("read", rerr)
	case n <= 0:
		return 0, io.EOF
	}
	return n, nil
}

// heldRead is the state of one Read that sends a held write; its callback
// is bound once per connection, so a Read allocates nothing.
type heldRead struct {
	c       *dataConn
	fn      func(fd uintptr) bool // c.rd.callback
	held, p []byte
	n       int
	rerr    error
	werr    error
	written bool
}

// callback is the RawConn.Read function: the first call sends the held
// write, the poller being armed for the answer, and asks to wait; later
// calls read.
func (r *heldRead) callback(fd uintptr) bool {
	if !r.written {
		r.written = true
		r.werr = r.c.writeFD(fd, r.held)
		return r.werr != nil
	}
	for {
		r.n, r.rerr = syscall.Read(int(fd), r.p)
		if r.rerr != syscall.EINTR {
			break
		}
	}
	return r.rerr != syscall.EAGAIN
}

// writeFD writes b on the socket from inside a RawConn.Read callback. What
// the socket does not take at once (its buffer full) goes through the
// ordinary Write, which waits for room under the write deadline.
func (c *dataConn) writeFD(fd uintptr, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(int(fd), b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			_, err := c.Conn.Write(b)
			return err
		case err != nil:
			return c.opError("write", err)
		}
		b = b[n:]
	}
	return nil
}

func (c *dataConn) opError(op string, errno error) error {
	return &net.OpError{Op: op, Net: "unix", Source: c.Conn.LocalAddr(), Addr: c.Conn.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

func (c *dataConn) LocalAddr() net.Addr { return c }
func (c *dataConn) Network() string     { return "unix" }
func (c *dataConn) String() string      { return c.Conn.LocalAddr().String() }

// NotSent says the request behind resp, which failed with an error,
// never fully reached its worker: the write of its last bytes, held back
// until the answer was awaited, failed.
func NotSent(resp *fasthttp.Response) bool {
	c, ok := resp.LocalAddr().(*dataConn)
	return ok && c.sendFailed.Load()
}
