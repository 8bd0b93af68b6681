package front

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/logging"
	"github.com/lanes-dev/lanes/supervisor/lane"
)

// spool carries a worker's response body to the client (nginx's
// proxy_buffering). A pump goroutine reads the worker's body as fast as
// the worker sends it into a buffer — up to response_buffer in memory,
// then a temporary file up to max_temp_file — and the front server writes
// the client's response from that buffer at the client's pace. The worker's
// slot is released, and the request accounted for, as soon as the worker
// has sent its last byte: a slow client costs a buffer, never a worker.
// Only past max_temp_file does the pump wait for the client (and then
// request_timeout, which bounds the worker's part, may cut the response).
//
// The buffer restarts from empty whenever the client has taken all of it,
// so a response streamed at the client's pace never grows it.
type spool struct {
	f    *Front
	lane Lane
	slot Slot
	resp *fasthttp.Response
	r    io.Reader
	rec  record
	// deadline is the request's hard deadline, which fasthttp set on the
	// worker connection.
	deadline time.Time
	start    time.Time
	method   []byte
	path     []byte
	access   []byte // the access log's fields of rec (keepAccess)

	mu     sync.Mutex
	cond   sync.Cond
	mem    *[]byte // the first bytes since the last restart
	file   *os.File
	flen   int64 // bytes in file since the last restart
	rpos   int64 // the client's position in mem, then file
	done   bool  // the pump has ended
	err    error // how the worker's body ended (nil: whole)
	closed bool  // the front server is done with the client's response
}

var spoolPool = sync.Pool{New: func() any { sp := new(spool); sp.cond.L = &sp.mu; return sp }}

// errClientGone ends the pump when the client's response was abandoned.
var errClientGone = errors.New("client went away")

// errTruncated is a worker response body that ended before its end.
var errTruncated = fmt.Errorf("worker closed the connection before the end of the body: %w", io.ErrUnexpectedEOF)

// pump reads the worker's body into the spool until it ends, then
// finishes the request.
func (sp *spool) pump() {
	bp := sp.f.bufs.read.Get().(*[]byte)
	buf := *bp
	var rerr error
	late := false
	for {
		late = !time.Now().Before(sp.deadline)
		n, err := sp.r.Read(buf)
		sp.rec.Bytes += n
		if n > 0 {
			if perr := sp.put(buf[:n]); perr != nil {
				rerr = perr
				break
			}
		}
		if err == io.EOF && sp.slot.Exchange(sp.resp).Truncated {
			// The worker closed between two chunks: fasthttp reads that
			// as the end. Failing the body closes the client's connection
			// without the terminating chunk.
			err = errTruncated
		}
		if err != nil {
			if err != io.EOF {
				rerr = err
			}
			break
		}
	}
	sp.f.bufs.read.Put(bp)
	closeStream(sp.resp, sp.r, rerr)
	fasthttp.ReleaseResponse(sp.resp)
	sp.resp, sp.r = nil, nil

	o := &sp.rec
	o.Total = time.Since(sp.start)
	o.Run = o.Total - o.Queue - o.Filter
	var cut error // what the client's response ends with
	switch {
	case rerr == nil:
	case errors.Is(rerr, errClientGone):
		o.Result, o.Err = lane.ClientGone, rerr
	case isTimeout(rerr) && late:
		// The deadline passed while the pump waited for the client to
		// make room: the body is cut, but the worker did nothing wrong.
		o.Result, o.Err, cut = lane.ClientGone, rerr, rerr
		sp.f.warn.Warn("client read the response slower than request_timeout allows past max_temp_file; response cut",
			"lane", sp.lane.Name(), "method", logging.Quote(sp.method), "path", logging.Quote(sp.path), "bytes", o.Bytes)
	case isTimeout(rerr):
		// The worker stalled mid-body past the hard timeout: the client
		// already has its status line, so all that is left is the kill.
		o.Result, o.Err, o.Truncated, cut = lane.HardTimeout, rerr, true, rerr
		sp.f.truncated.Add(1)
	default:
		// The worker failed mid-body: the client's connection is closed
		// without the end of the body, and the request counts as failed.
		o.Result, o.Err, o.Truncated, cut = lane.Broken, rerr, true, rerr
		sp.f.truncated.Add(1)
		sp.f.warn.Warn("response cut short: worker failed mid-body", "lane", sp.lane.Name(),
			"method", logging.Quote(sp.method), "path", logging.Quote(sp.path), "pid", sp.slot.PID(), "bytes", o.Bytes, "error", rerr)
	}
	sp.f.finish(sp.lane, sp.slot, o)

	sp.mu.Lock()
	sp.done, sp.err = true, cut
	sp.cond.Broadcast()
	free := sp.closed
	sp.mu.Unlock()
	if free {
		sp.free()
	}
}

// put appends p to the spool, waiting for the client to take what is
// there when max_temp_file is full. It fails once the client is gone.
func (sp *spool) put(p []byte) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	memMax := cap(*sp.mem)
	for {
		if sp.closed {
			return errClientGone
		}
		if sp.rpos == int64(len(*sp.mem))+sp.flen {
			// The client has everything: start again from empty.
			*sp.mem = (*sp.mem)[:0]
			sp.flen, sp.rpos = 0, 0
		}
		if sp.flen == 0 && len(*sp.mem)+len(p) <= memMax {
			*sp.mem = append(*sp.mem, p...)
			sp.cond.Broadcast()
			return nil
		}
		if sp.flen+int64(len(p)) <= sp.f.cfg.MaxTempFile {
			break
		}
		sp.cond.Wait() // full: wait for the client to take it all
	}
	if sp.file == nil {
		f, err := sp.f.tempFile("resp-")
		if err != nil {
			sp.f.warn.Warn("cannot buffer a response in a temporary file; the worker waits for the client", "error", err)
			// Without a file, behave as without buffering: wait until
			// the client has taken what there is.
			for !sp.closed && sp.rpos < int64(len(*sp.mem)) {
				sp.cond.Wait()
			}
			if sp.closed {
				return errClientGone
			}
			*sp.mem = append((*sp.mem)[:0], p...)
			sp.rpos = 0
			sp.cond.Broadcast()
			return nil
		}
		sp.file = f
	}
	if _, err := sp.file.WriteAt(p, sp.flen); err != nil {
		return err
	}
	sp.flen += int64(len(p))
	sp.cond.Broadcast()
	return nil
}

// Read gives the client the next bytes of the body, waiting for the
// worker when the client has caught up with it.
func (sp *spool) Read(p []byte) (int, error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for {
		mlen := int64(len(*sp.mem))
		total := mlen + sp.flen
		if sp.rpos < total {
			var n int
			var err error
			if sp.rpos < mlen {
				n = copy(p, (*sp.mem)[sp.rpos:])
			} else {
				n, err = sp.file.ReadAt(p[:min(int64(len(p)), total-sp.rpos)], sp.rpos-mlen)
				if err == io.EOF {
					err = nil
				}
			}
			sp.rpos += int64(n)
			if sp.rpos == total {
				sp.cond.Broadcast() // room for the pump
			}
			return n, err
		}
		if sp.done {
			if sp.err != nil {
				return 0, sp.err
			}
			return 0, io.EOF
		}
		sp.cond.Wait()
	}
}

// CloseWithError implements fasthttp.ReadCloserWithError; the front server
// calls it exactly once, when the response is written or abandoned. spool
// has no Close method on purpose: fasthttp would call both.
func (sp *spool) CloseWithError(error) error {
	sp.mu.Lock()
	sp.closed = true
	sp.cond.Broadcast()
	free := sp.done
	sp.mu.Unlock()
	if free {
		sp.free()
	}
	return nil
}

// free returns the spool to its pool once both the pump and the client's
// response are done with it.
func (sp *spool) free() {
	if sp.file != nil {
		sp.file.Close()
	}
	*sp.mem = (*sp.mem)[:0]
	sp.f.bufs.resp.Put(sp.mem)
	sp.f, sp.lane, sp.slot, sp.rec = nil, nil, nil, record{}
	sp.method, sp.path, sp.access = sp.method[:0], sp.path[:0], sp.access[:0]
	sp.mem, sp.file, sp.flen, sp.rpos = nil, nil, 0, 0
	sp.done, sp.err, sp.closed = false, nil, false
	spoolPool.Put(sp)
}

var _ fasthttp.ReadCloserWithError = (*spool)(nil)
