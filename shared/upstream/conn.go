package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/cleanconn"
)

// Dial returns a HostClient's dial function: a TCP connection (TLS on top
// for https) wrapped in a Conn. fasthttp takes a connection with a
// Handshake method for TLS already done.
func Dial(isTLS bool, tlsConfig *tls.Config) fasthttp.DialFuncWithTimeout {
	dial := func(addr string, timeout time.Duration) (raw, conn net.Conn, err error) {
		if timeout > 0 {
			raw, err = fasthttp.DialTimeout(addr, timeout)
		} else {
			raw, err = fasthttp.Dial(addr)
		}
		if err != nil || !isTLS {
			return raw, raw, err
		}
		tc := tls.Client(raw, tlsConfig)
		hctx, cancel := context.Background(), context.CancelFunc(func() {})
		if timeout > 0 {
			hctx, cancel = context.WithTimeout(hctx, timeout)
		}
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, nil, err
		}
		return raw, tc, nil
	}
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		c := &Conn{addr: addr, dial: dial}
		c.laddr = &Addr{c: c}
		if err := c.connect(timeout); err != nil {
			return nil, err
		}
		return c, nil
	}
}

// Addr is an upstream connection's local address, carrying the connection
// itself: fasthttp hands a response its connection's addresses
// (Response.LocalAddr) and nothing else of it.
type Addr struct {
	net.Addr
	c *Conn
}

// Conn is a connection to the upstream that watches what fasthttp's
// client cannot be told:
//
//   - whether the connection has ended (a Read failed or hit EOF), which
//     tells a body cut at a chunk boundary from one that ended properly;
//   - whether a byte of the request in flight reached the socket: a
//     request that did may have reached the app, and one that must not
//     run twice cannot be sent again;
//   - whether a response is "101 Switching Protocols": fasthttp would put
//     that connection, now speaking another protocol, back in the pool,
//     where it fails the next request. The Read that brings it fails
//     instead (ErrSwitched), so fasthttp closes the connection;
//   - whether the connection is clean when fasthttp takes it from its pool
//     for a new request (package cleanconn): bytes past the last answer, or
//     arriving while idle, are not the new request's answer. The first
//     Write of the request then goes to a fresh connection instead, so the
//     request gets its own answer and the dirty connection is closed.
//
// Reads and Writes come from one request at a time (fasthttp's client does
// not pipeline), so the tracking state needs no lock; the atomics are for
// readers of a response's connection after the exchange.
type Conn struct {
	net.Conn // TCP, or TLS over it
	laddr    *Addr
	ended    atomic.Bool
	sent     atomic.Int64 // bytes of the request in flight written
	answered bool         // an answer byte came since the last write
	// idle, when not 0, is the read timeout renewed before every Read
	// (nanoseconds): set while a response body streams (SetIdleTimeout),
	// cleared when the next request is written and fasthttp's deadline
	// holds again.
	idle atomic.Int64
	t    cleanconn.Tracker

	addr string
	dial func(addr string, timeout time.Duration) (raw, conn net.Conn, err error)
	wdl  time.Time // the write deadline fasthttp set; a replacement gets it too
}

// connect dials the upstream and makes c that connection.
func (c *Conn) connect(timeout time.Duration) error {
	raw, conn, err := c.dial(c.addr, timeout)
	if err != nil {
		return err
	}
	var rc syscall.RawConn
	if sc, ok := raw.(syscall.Conn); ok {
		rc, _ = sc.SyscallConn()
	}
	c.Conn = conn
	c.laddr.Addr = raw.LocalAddr()
	c.ended.Store(false)
	c.sent.Store(0)
	c.answered = false
	c.t.Attach(rc)
	return nil
}

// LocalAddr implements net.Conn: an *Addr that leads back to c.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// Handshake tells fasthttp not to wrap the connection in TLS again.
func (c *Conn) Handshake() error {
	if tc, ok := c.Conn.(*tls.Conn); ok {
		return tc.Handshake()
	}
	return nil
}

func (c *Conn) SetDeadline(t time.Time) error {
	c.wdl = t
	return c.Conn.SetDeadline(t)
}

func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wdl = t
	return c.Conn.SetWriteDeadline(t)
}

// SetIdleTimeout makes d bound each wait for the response body's bytes,
// renewed before every Read, instead of the whole transfer: a slow but
// moving stream goes on (nginx's proxy_read_timeout). The next request's
// Write clears it.
func (c *Conn) SetIdleTimeout(d time.Duration) { c.idle.Store(int64(d)) }

func (c *Conn) Write(p []byte) (int, error) {
	c.idle.Store(0)
	if c.answered {
		c.answered = false
		c.sent.Store(0) // a new request on a reused connection
	}
	if !c.t.Write(p) {
		// Nothing of this request is on the dirty connection yet: it goes
		// out whole on a fresh one, within the request's deadline.
		_ = c.Conn.Close()
		var timeout time.Duration
		if !c.wdl.IsZero() {
			if timeout = time.Until(c.wdl); timeout <= 0 {
				return 0, fasthttp.ErrDialTimeout
			}
		}
		if err := c.connect(timeout); err != nil {
			return 0, fmt.Errorf("replace a dirty upstream connection: %w", err)
		}
		if !c.wdl.IsZero() {
			if err := c.Conn.SetWriteDeadline(c.wdl); err != nil {
				return 0, err
			}
		}
		c.t.Write(p)
	}
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

func (c *Conn) Read(p []byte) (int, error) {
	if d := c.idle.Load(); d > 0 {
		if err := c.Conn.SetReadDeadline(time.Now().Add(time.Duration(d))); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	if err != nil {
		c.ended.Store(true)
	}
	if n > 0 {
		c.answered = true
		c.t.Read(p[:n])
		if c.t.Switched() {
			c.ended.Store(true)
			_ = c.Conn.Close()
			return 0, ErrSwitched
		}
	}
	return n, err
}

// Ended says the connection has ended: a Read saw EOF or an error.
func (c *Conn) Ended() bool { return c.ended.Load() }

// ConnOf returns the upstream connection resp came on, or nil.
func ConnOf(resp *fasthttp.Response) *Conn {
	if a, ok := resp.LocalAddr().(*Addr); ok {
		return a.c
	}
	return nil
}

// Reached says a byte of the request behind resp, which failed with an
// error, was taken by the upstream's socket: the app may have read it and
// acted, so a request that must not run twice cannot be sent again. A
// request that never got a connection reached nothing.
func Reached(resp *fasthttp.Response) bool {
	c := ConnOf(resp)
	return c != nil && c.sent.Load() > 0
}

// Truncated says resp's streamed body, which ended in io.EOF, was cut
// short: it is framed (chunked or Content-Length), so it never needs the
// connection's end, yet the connection ended. fasthttp's chunked reader
// takes a connection closed between two chunks for the end of the body,
// and its length-delimited one may too.
func Truncated(resp *fasthttp.Response) bool {
	c := ConnOf(resp)
	return c != nil && resp.Header.ContentLength() != -2 && c.ended.Load()
}
