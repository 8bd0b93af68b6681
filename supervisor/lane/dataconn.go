package lane

import (
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/cleanconn"
	"github.com/lanes-dev/lanes/shared/heldconn"
)

// dataConn is one data-plane connection to a worker. It remembers whether
// the worker has closed it, because fasthttp's chunked body reader cannot
// tell a body that ended from one whose worker closed the connection between
// two chunks: both end in io.EOF. Its LocalAddr is the dataConn itself, so
// that a response (Response.LocalAddr) leads back to the connection it came
// on.
//
// It also saves a system call per request: fasthttp's client writes a
// request and at once reads the answer, and a worker sends nothing it was
// not asked for (checked below), so every write is held back and sent from
// inside the Read that waits for the answer (package heldconn).
//
// A held write that fails (a worker gone: EPIPE) fails the Read instead
// of the Write, and fasthttp reports any error on an answer's first byte
// as a closed connection; SendFailed keeps the truth for Undelivered
// (Exchange).
//
// A worker may be a program we did not write, so a connection carries a
// new request only when clean (package cleanconn): bytes past the last
// answer, or arriving while idle, would be read as the new request's
// answer. The request's first write then goes to a fresh connection
// instead, before anything of it is sent, and the dirty one is closed.
// The check also makes sound heldconn's premise that nothing waits on the
// socket when the Read starts.
type dataConn struct {
	*heldconn.Conn
	closed atomic.Bool // a Read saw EOF or an error: the peer is gone
	// answered says bytes of an answer came since the last write: the next
	// write starts a new request, whose first byte is sent counts from mark.
	answered atomic.Bool
	mark     atomic.Uint64
	// reused says the request being sent is not the connection's first:
	// an answer came on it before.
	reused atomic.Bool
	t      cleanconn.Tracker
	dial   func() (net.Conn, error)
	wdl    time.Time // the write deadline fasthttp set; a replacement gets it too
}

// dialData returns a dataConn dialled with dial, which it also uses to
// replace a dirty connection.
func dialData(dial func() (net.Conn, error)) (*dataConn, error) {
	c, err := dial()
	if err != nil {
		return nil, err
	}
	d := newDataConn(c)
	d.dial = dial
	return d, nil
}

func newDataConn(c net.Conn) *dataConn {
	d := &dataConn{}
	d.attach(c)
	return d
}

func (c *dataConn) attach(nc net.Conn) {
	c.Conn = heldconn.New(nc)
	c.closed.Store(false)
	c.answered.Store(false)
	c.reused.Store(false)
	c.mark.Store(0) // nothing of the request went out on this connection yet
	var rc syscall.RawConn
	if sc, ok := nc.(syscall.Conn); ok {
		rc, _ = sc.SyscallConn()
	}
	c.t.Attach(rc)
}

func (c *dataConn) Write(p []byte) (int, error) {
	if c.answered.Swap(false) {
		c.mark.Store(c.Sent())
		c.reused.Store(true)
	}
	// Without a dial (unit tests of the held writes) nothing is checked.
	if c.dial != nil && !c.t.Write(p) {
		if err := c.replace(); err != nil {
			return 0, err
		}
		c.t.Write(p)
	}
	return c.Hold(p)
}

// replace closes a dirty connection and dials its replacement.
func (c *dataConn) replace() error {
	_ = c.Conn.Close()
	nc, err := c.dial()
	if err != nil {
		return fmt.Errorf("replace a dirty worker connection: %w", err)
	}
	if !c.wdl.IsZero() {
		if err := nc.SetWriteDeadline(c.wdl); err != nil {
			nc.Close()
			return err
		}
	}
	c.attach(nc)
	return nil
}

func (c *dataConn) SetDeadline(t time.Time) error {
	c.wdl = t
	return c.Conn.SetDeadline(t)
}

func (c *dataConn) SetWriteDeadline(t time.Time) error {
	c.wdl = t
	return c.Conn.SetWriteDeadline(t)
}

func (c *dataConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.answered.Store(true)
		c.t.Read(p[:n])
	}
	if err != nil {
		c.closed.Store(true)
	}
	return n, err
}

func (c *dataConn) LocalAddr() net.Addr { return c }
func (c *dataConn) Network() string     { return "unix" }
func (c *dataConn) String() string      { return c.Conn.Conn.LocalAddr().String() }

// notSent says the request behind resp, which failed with an error,
// never fully reached its worker: the write of its last bytes, held back
// until the answer was awaited, failed.
func notSent(resp *fasthttp.Response) bool {
	c, ok := resp.LocalAddr().(*dataConn)
	return ok && c.SendFailed()
}

// responded says bytes of an answer to the request behind resp, which
// failed with an error, came from its worker: a response began (perhaps
// not HTTP), and the request is not sent to another worker.
func responded(resp *fasthttp.Response) bool {
	c, ok := resp.LocalAddr().(*dataConn)
	return ok && c.answered.Load()
}

// stale says the request behind resp, which failed with an error, went
// out on a connection that had carried an answer before, and the worker
// closed it without a byte of a new answer: an app server that closes
// idle keep-alive connections closed this one as the request was sent
// (the race every HTTP client has with keep-alive). Nothing says the
// worker is broken.
func stale(resp *fasthttp.Response) bool {
	c, ok := resp.LocalAddr().(*dataConn)
	return ok && c.reused.Load() && !c.answered.Load() && c.closed.Load()
}

// reached says a byte of the request behind resp, which failed with an
// error, was taken by its worker's socket: the worker may have read it and
// passed the request on, so a request that must not run twice cannot be
// sent again. A request that never got a connection reached nothing.
func reached(resp *fasthttp.Response) bool {
	c, ok := resp.LocalAddr().(*dataConn)
	return ok && c.Sent() > c.mark.Load()
}
