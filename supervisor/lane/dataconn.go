package lane

import (
	"net"
	"sync/atomic"

	"github.com/valyala/fasthttp"

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
// request and at once reads the answer, and a worker never sends a byte it
// was not asked for, so every write is held back and sent from inside the
// Read that waits for the answer (package heldconn).
//
// A held write that fails (a worker gone: EPIPE) fails the Read instead
// of the Write, and fasthttp reports any error on an answer's first byte
// as a closed connection; SendFailed keeps the truth for Undelivered.
type dataConn struct {
	*heldconn.Conn
	closed atomic.Bool // a Read saw EOF or an error: the peer is gone
	// answered says bytes of an answer came since the last write: the next
	// write starts a new request, whose first byte is sent counts from mark.
	answered atomic.Bool
	mark     atomic.Uint64
}

func newDataConn(c net.Conn) *dataConn {
	return &dataConn{Conn: heldconn.New(c)}
}

func (c *dataConn) Write(p []byte) (int, error) {
	if c.answered.Swap(false) {
		c.mark.Store(c.Sent())
	}
	return c.Hold(p)
}

func (c *dataConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.answered.Store(true)
	}
	if err != nil {
		c.closed.Store(true)
	}
	return n, err
}

func (c *dataConn) LocalAddr() net.Addr { return c }
func (c *dataConn) Network() string     { return "unix" }
func (c *dataConn) String() string      { return c.Conn.Conn.LocalAddr().String() }

// NotSent says the request behind resp, which failed with an error,
// never fully reached its worker: the write of its last bytes, held back
// until the answer was awaited, failed.
func NotSent(resp *fasthttp.Response) bool {
	c, ok := resp.LocalAddr().(*dataConn)
	return ok && c.SendFailed()
}

// Reached says a byte of the request behind resp, which failed with an
// error, was taken by its worker's socket: the worker may have read it and
// passed the request on, so a request that must not run twice cannot be
// sent again. A request that never got a connection reached nothing.
func Reached(resp *fasthttp.Response) bool {
	c, ok := resp.LocalAddr().(*dataConn)
	return ok && c.Sent() > c.mark.Load()
}
