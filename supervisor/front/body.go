package front

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"

	"github.com/valyala/fasthttp"
)

// reqBody is a request body the front has read whole before taking a
// worker (nginx's proxy_request_buffering): up to client_body_buffer in
// memory, the rest in an unlinked temporary file of the run directory. A
// slow upload then costs the front a buffer and never a worker, and a
// request can be sent again, from the start, to another worker.
type reqBody struct {
	mem  *[]byte
	n    int
	file *os.File
	size int64 // whole body: n + what is in file
	rd   bytes.Reader
}

// readBody reads ctx's request body, if it streams one, into rb and makes
// the request carry rb. max_body_size is enforced here: fasthttp does not
// once bodies stream.
func (f *Front) readBody(req *fasthttp.Request, rb *reqBody) *refusal {
	if !req.IsBodyStream() {
		return nil
	}
	max := int64(f.cfg.MaxBodySize)
	if int64(req.Header.ContentLength()) > max {
		return refuseBodyLarge
	}
	r := req.BodyStream()
	rb.mem = f.bufs.body.Get().(*[]byte)
	buf := (*rb.mem)[:cap(*rb.mem)]
	n, err := io.ReadFull(r, buf)
	rb.n, rb.size = n, int64(n)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		err = nil
	case err == nil:
		// Full: the rest goes to a file. One byte more than the limit
		// tells a body of exactly max_body_size from a longer one.
		rb.file, err = f.tempFile("body-")
		if err != nil {
			f.warn.Warn("cannot spool a request body", "error", err)
			return refuseSpool
		}
		var m int64
		m, err = io.Copy(rb.file, io.LimitReader(r, max-rb.size+1))
		rb.size += m
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return refuseBodyTime
		}
		return refuseBody
	}
	if rb.size > max {
		return refuseBodyLarge
	}
	dropTrailers(&req.Header)
	rb.attach(req)
	return nil
}

// attach makes req send the body from its start; a retry calls it again.
func (rb *reqBody) attach(req *fasthttp.Request) {
	if rb.mem == nil {
		return
	}
	if rb.file == nil {
		// Valid until serve returns, which is after the last write of it.
		req.SetBodyRaw((*rb.mem)[:rb.n])
		return
	}
	rb.rd.Reset((*rb.mem)[:rb.n])
	req.SetBodyStream(readOnly{io.MultiReader(&rb.rd, io.NewSectionReader(rb.file, 0, rb.size-int64(rb.n)))}, int(rb.size))
}

// release returns rb's buffer and removes its file.
func (f *Front) releaseBody(rb *reqBody) {
	if rb.mem != nil {
		f.bufs.body.Put(rb.mem)
	}
	if rb.file != nil {
		rb.file.Close()
	}
	*rb = reqBody{}
}

// readOnly hides a reader's Close from fasthttp, which closes a body
// stream after writing it: the body may have to be sent again.
type readOnly struct{ io.Reader }

// tempFile returns a new temporary file in the run directory, already
// unlinked: it goes away with its last descriptor, even on a crash.
func (f *Front) tempFile(prefix string) (*os.File, error) {
	file, err := os.CreateTemp(f.opt.RunDir, prefix)
	if err != nil {
		return nil, err
	}
	_ = os.Remove(file.Name())
	return file, nil
}

// bufPool returns a pool of byte slices of capacity n.
func bufPool(n int) *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, n); return &b }}
}
