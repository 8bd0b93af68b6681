// Package heldconn saves a system call on each exchange of a request and
// its answer over a socket whose peer never speaks unasked.
//
// Go's Read first tries the socket, finds nothing (EAGAIN: the peer has not
// even seen the last write yet) and only then waits for it. A Conn holds a
// small write back and sends it from inside the next Read, through the
// socket's RawConn, after Go's poller has been armed for the answer: the
// Read waits without trying first.
//
// That is sound only when nothing can already wait on the socket when the
// Read starts, since the armed poller misses what came before it: the peer
// must send nothing it was not asked for by the held write itself. The
// front's connections to its workers hold every request (a worker answers
// only what it is asked); a worker holds only the end of a response to a
// request without a body (the front sends the next request only once it
// has the whole answer).
//
// A held write that fails (a peer gone: EPIPE) fails the Read instead of
// the Write; SendFailed keeps the truth.
package heldconn

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// Max is the largest write held back for the next Read: a request header,
// a small answer, or the tail of either. Larger writes go out at once.
const Max = 16 << 10

// Conn is a connection whose Hold defers a write to the next Read.
type Conn struct {
	net.Conn
	raw syscall.RawConn // nil: writes are never held (not a socket)

	mu   sync.Mutex // held, between the writer's goroutine and Flush
	held []byte     // the last write, not sent yet
	rd   heldRead   // used by one Read at a time

	sendFailed atomic.Bool   // a held write failed: the peer never got it
	sent       atomic.Uint64 // bytes the kernel took for the peer, held or not
}

// New wraps c; a connection without a RawConn holds nothing.
func New(c net.Conn) *Conn {
	h := &Conn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			h.raw = raw
			h.rd.c = h
			h.rd.fn = h.rd.callback
		}
	}
	return h
}

// Holding says writes can be held (the connection is a socket).
func (c *Conn) Holding() bool { return c.raw != nil }

// SendFailed says a held write failed to go out.
func (c *Conn) SendFailed() bool { return c.sendFailed.Load() }

// Sent returns how many bytes the socket has taken for the peer so far:
// once a byte of a request is counted here, the peer may have acted on it.
func (c *Conn) Sent() uint64 { return c.sent.Load() }

// write writes p through the connection and counts what it took.
func (c *Conn) write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(uint64(max(n, 0)))
	return n, err
}

// Hold sends what is held, then holds p for the next Read, or writes it at
// once when it is larger than Max.
func (c *Conn) Hold(p []byte) (int, error) {
	if c.raw == nil {
		return c.write(p)
	}
	if err := c.Flush(); err != nil {
		return 0, err
	}
	if len(p) > Max {
		return c.write(p)
	}
	c.mu.Lock()
	c.held = append(c.held[:0], p...)
	c.mu.Unlock()
	return len(p), nil
}

// Write sends what is held, then p.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return c.write(p)
}

// Flush writes out a held write the ordinary way.
func (c *Conn) Flush() error {
	b := c.takeHeld()
	if len(b) == 0 {
		return nil
	}
	if _, err := c.write(b); err != nil {
		c.sendFailed.Store(true)
		return err
	}
	return nil
}

// takeHeld returns the held write and forgets it; the slice stays valid
// until the next Hold.
func (c *Conn) takeHeld() []byte {
	c.mu.Lock()
	b := c.held
	c.held = c.held[:0]
	c.mu.Unlock()
	return b
}

// Read sends what is held, and waits for the answer without trying the
// socket first.
func (c *Conn) Read(p []byte) (int, error) {
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
	c       *Conn
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
func (c *Conn) writeFD(fd uintptr, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(int(fd), b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			_, err := c.write(b)
			return err
		case err != nil:
			return c.opError("write", err)
		}
		c.sent.Add(uint64(n))
		b = b[n:]
	}
	return nil
}

func (c *Conn) opError(op string, errno error) error {
	network := "unix"
	if a := c.Conn.LocalAddr(); a != nil {
		network = a.Network()
	}
	return &net.OpError{Op: op, Net: network, Source: c.Conn.LocalAddr(), Addr: c.Conn.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}
