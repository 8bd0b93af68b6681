package theme

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"sync"
)

// buffer is pooled working memory for bodies.
type buffer struct{ B []byte }

// maxPooled keeps the odd huge body's buffer out of the pool.
const maxPooled = 1 << 20

var bufPool = sync.Pool{New: func() any { return new(buffer) }}

func getBuf() *buffer {
	b := bufPool.Get().(*buffer) //nolint:forcetypeassert
	b.B = b.B[:0]
	return b
}

// putBuf returns b to the pool. b.B must no longer be referenced.
func putBuf(b *buffer) {
	if b == nil || cap(b.B) > maxPooled {
		return
	}
	bufPool.Put(b)
}

// readFrom appends r to b until EOF or until b holds limit bytes. It
// returns nil at EOF, or at the limit (the caller checks the length).
func (b *buffer) readFrom(r io.Reader, limit int) error {
	for len(b.B) < limit {
		if len(b.B) == cap(b.B) {
			b.B = append(b.B, 0)[:len(b.B)]
		}
		room := b.B[len(b.B):min(cap(b.B), limit)]
		n, err := r.Read(room)
		b.B = b.B[:len(b.B)+n]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Write, WriteByte and WriteString let html.Render write to a buffer
// without a bufio.Writer in between.
func (b *buffer) Write(p []byte) (int, error) {
	b.B = append(b.B, p...)
	return len(p), nil
}

func (b *buffer) WriteByte(c byte) error {
	b.B = append(b.B, c)
	return nil
}

func (b *buffer) WriteString(s string) (int, error) {
	b.B = append(b.B, s...)
	return len(s), nil
}

var gzPool sync.Pool // *gzip.Reader

// errTooLarge is a decoded body over the limit.
var errTooLarge = errors.New("theme: decoded body too large")

// gunzip decodes the gzip stream src into dst, failing past limit bytes of
// output (a small gzip body can decode to gigabytes).
func gunzip(dst *buffer, src []byte, limit int) error {
	zr, _ := gzPool.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(bytes.NewReader(src))
	} else {
		err = zr.Reset(bytes.NewReader(src))
	}
	if err != nil {
		return err
	}
	defer gzPool.Put(zr)
	if err := dst.readFrom(zr, limit+1); err != nil {
		return err
	}
	if len(dst.B) > limit {
		return errTooLarge
	}
	return nil
}
