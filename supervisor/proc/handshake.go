package proc

import (
	"bufio"
	"bytes"
	"io"
	"regexp"

	"github.com/hashicorp/go-hclog"
)

// handshakeLine matches go-plugin's handshake line, which a worker prints
// on stdout once its servers listen:
// CORE|APP|NETWORK|ADDRESS|PROTOCOL[|CERT], where CORE is go-plugin's
// core protocol version, 1.
var handshakeLine = regexp.MustCompile(`1\|[0-9]+\|(unix|tcp)\|[^|\n]*\|(grpc|netrpc)(\|[^|\n]*)?\r?\n?$`)

const (
	preambleLines = 20      // lines of output before the handshake logged per process
	preambleMax   = 4 << 10 // longest such line kept (the rest is dropped)
)

// handshakeOnly is a worker's stdout as go-plugin reads it: anything the
// program printed before its handshake (a banner, a debug print in an
// init function) is logged as the worker's output and skipped, so that the
// handshake is the first line go-plugin sees. go-plugin would otherwise
// refuse the worker ("Unrecognized remote plugin message"), every start
// would fail, and a lane whose old workers still serve would show a crash
// loop for a print. After the handshake the stream passes through.
type handshakeOnly struct {
	r      *bufio.Reader
	log    hclog.Logger
	logged int
	rest   []byte // the handshake line, not yet returned
	found  bool
	closer io.Closer
}

func newHandshakeOnly(rc io.ReadCloser, log hclog.Logger) *handshakeOnly {
	return &handshakeOnly{r: bufio.NewReaderSize(rc, 4096), log: log, closer: rc}
}

func (h *handshakeOnly) Read(p []byte) (int, error) {
	for !h.found {
		line, err := h.readLine()
		if i := handshakeStart(line); i >= 0 {
			h.junk(line[:i])
			h.rest, h.found = line[i:], true
			break
		}
		h.junk(line)
		if err != nil {
			return 0, err
		}
	}
	if len(h.rest) > 0 {
		n := copy(p, h.rest)
		h.rest = h.rest[n:]
		return n, nil
	}
	return h.r.Read(p)
}

func (h *handshakeOnly) Close() error { return h.closer.Close() }

// readLine returns the next line with its newline, at most preambleMax
// bytes of it (the remainder of a longer line is dropped).
func (h *handshakeOnly) readLine() ([]byte, error) {
	line, err := h.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		buf := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			line, err = h.r.ReadSlice('\n')
			if len(buf) < preambleMax {
				buf = append(buf, line[:min(len(line), preambleMax-len(buf))]...)
			}
		}
		return buf, err
	}
	return append([]byte(nil), line...), err
}

// handshakeStart returns where the handshake begins in line, or -1. It may
// follow output printed without a newline.
func handshakeStart(line []byte) int {
	loc := handshakeLine.FindIndex(line)
	if loc == nil {
		return -1
	}
	return loc[0]
}

// junk logs output printed before the handshake, a bounded number of lines
// per process.
func (h *handshakeOnly) junk(b []byte) {
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return
	}
	switch h.logged++; {
	case h.logged <= preambleLines:
		h.log.Warn("worker printed to stdout before its handshake (stdout is the handshake channel; print to stderr)", "line", string(b))
	case h.logged == preambleLines+1:
		h.log.Warn("worker printed more lines before its handshake; not logged")
	}
}
