package worker

import (
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"
)

// countingListener counts the writes on the connections it accepts.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// onlyReader hides every method but Read, as a proxied upstream body does.
type onlyReader struct{ io.Reader }

// A streamed response body leaves the worker in large writes: 1 MB in 4 KB
// writes (fasthttp's buffer) would be 256 of them.
func TestStreamedBodyLargeWrites(t *testing.T) {
	const size = 1 << 20
	sock := filepath.Join(t.TempDir(), "w.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	srv := NewServer(func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStream(onlyReader{strings.NewReader(strings.Repeat("x", size))}, size)
	}, hclog.NewNullLogger(), Limits{})
	go srv.Serve(copyListener{countingListener{ln, &writes}})
	defer srv.Shutdown()

	c := &fasthttp.HostClient{Addr: sock, Dial: func(string) (net.Conn, error) { return net.Dial("unix", sock) }}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI("http://worker/big")
	if err := c.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	if n := len(resp.Body()); n != size {
		t.Fatalf("body: %d bytes, want %d", n, size)
	}
	if n := writes.Load(); n > size/copyBuffer+4 {
		t.Errorf("%d writes for a %d-byte body; want at most %d (writes of %d bytes)", n, size, size/copyBuffer+4, copyBuffer)
	}
}
