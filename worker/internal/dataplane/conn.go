package dataplane

import (
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/heldconn"
)

// copyBuffer is the size of the writes that carry a streamed response body
// to the front.
const copyBuffer = 64 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBuffer); return &b }}

// Listener hands the data-plane server its connections from the front
// as dataConns.
type Listener struct{ net.Listener }

func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &dataConn{Conn: heldconn.New(c)}, nil
}

// dataConn is a data-plane connection from the front. It saves the front
// two costs:
//
//   - The end of an answer to a request without a body is held back and
//     sent from inside the Read that waits for the next request (package
//     heldconn), which saves the read that would find nothing: the front
//     sends the next request on a connection only once it has the whole
//     answer, and there is no body of this request left to arrive.
//   - ReadFrom copies a streamed response body in copyBuffer writes.
//     fasthttp writes a body through a 4 KB bufio.Writer, which passes it
//     to the connection's ReadFrom once its own buffer is empty; a unix
//     socket has none, so a 100 MB body left the worker in 25,600 writes
//     of 4 KB, each waking the front.
type dataConn struct {
	*heldconn.Conn
	hold atomic.Bool // the answer being written may be held (holdAnswer)
}

func (c *dataConn) Write(p []byte) (int, error) {
	if c.hold.Load() {
		return c.Hold(p)
	}
	return c.Conn.Write(p)
}

func (c *dataConn) Read(p []byte) (int, error) {
	c.hold.Store(false)
	return c.Conn.Read(p)
}

// Close sends what is held first: an answer with Connection: close.
func (c *dataConn) Close() error {
	c.hold.Store(false)
	err := c.Flush()
	if cerr := c.Conn.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadFrom copies r to the connection in copyBuffer-sized writes, from a
// pooled buffer. A body that may be held (holdAnswer: a small stream of
// known length) goes through Write, so that its last piece is held.
func (c *dataConn) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	if c.hold.Load() {
		return io.CopyBuffer(struct{ io.Writer }{c}, r, *bp)
	}
	return io.CopyBuffer(struct{ io.Writer }{c.Conn}, r, *bp)
}

// holdAnswer lets the answer to a request without a body be held back on
// its dataConn until the next Read, unless the handler took the connection
// over or streams an answer of unknown or large length (each part of a
// chunked stream must leave as it is written). A streamed body of at most
// heldconn.Max bytes may be held: fasthttp flushes it only once its 4 KB
// buffer is full or the body ended, and the front reads such a body whole
// before it answers anyway.
func holdAnswer(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		// -2: neither Content-Length nor chunked, which for a request
		// means no body. Read before the handler, which may change it.
		n := ctx.Request.Header.ContentLength()
		bodyless := n == 0 || n == -2
		h(ctx)
		if ctx.LastTimeoutErrorResponse() != nil {
			// The handler may still be running on ctx: leave its
			// response alone (what goes out is the timeout response).
			return
		}
		c, ok := ctx.Conn().(*dataConn)
		m := ctx.Response.Header.ContentLength()
		small := !ctx.Response.IsBodyStream() || m >= 0 && m <= heldconn.Max
		if ok && bodyless && small && !ctx.Hijacked() {
			c.hold.Store(true)
		}
	}
}
