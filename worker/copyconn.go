package worker

import (
	"io"
	"net"
	"sync"
)

// copyBuffer is the size of the writes that carry a streamed response body
// to the front.
const copyBuffer = 64 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBuffer); return &b }}

// copyListener hands the data-plane server connections whose ReadFrom
// copies in copyBuffer writes. fasthttp writes a streamed response body
// through the connection's 4 KB bufio.Writer, which passes the body to the
// connection's ReadFrom once its own buffer is empty; a unix socket has
// none, so without this a 100 MB body left the worker in 25,600 writes of
// 4 KB, each waking the front.
type copyListener struct{ net.Listener }

func (l copyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return copyConn{c}, nil
}

type copyConn struct{ net.Conn }

// ReadFrom copies r to the connection in copyBuffer-sized writes, from a
// pooled buffer.
func (c copyConn) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{c.Conn}, r, *bp)
}
