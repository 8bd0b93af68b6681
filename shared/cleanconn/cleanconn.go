// Package cleanconn lets a pooled HTTP/1.1 client connection to a server
// lanes does not control carry a new request only when it is clean: the
// last answer ended exactly where the bytes read from it end, and nothing
// has arrived since.
//
// An upstream that sends more than its Content-Length (an app counting
// characters, not bytes), a body to HEAD, 204 or 304, or an answer nobody
// asked for, leaves bytes on the connection that the next request would
// read as its own answer: another client's. fasthttp's client puts such a
// connection back in its pool and drops what its read buffer held. A
// Tracker follows the framing of each answer as its bytes are read, so it
// knows when one went past its end, even where those bytes sit in the
// client's buffer; Pending finds what arrived on the socket while the
// connection was idle, as nginx does by reading its idle upstream
// connections. A connection that is not clean is closed and replaced
// before anything of the new request is written to it, so the request
// goes out whole on a fresh connection and nothing is lost.
package cleanconn

import (
	"bytes"
	"syscall"
	"unsafe"
)

// lineMax is the part of a status, header or chunk-size line the Tracker
// keeps: enough for every field it reads.
const lineMax = 64

type state uint8

const (
	stIdle       state = iota // between answers: any byte is one too many
	stStatus                  // a status line
	stHeader                  // header lines
	stBody                    // a Content-Length body
	stChunkSize               // a chunk-size line
	stChunkData               // chunk data
	stChunkEnd                // the CRLF after chunk data
	stTrailer                 // trailer lines after the last chunk
	stUntilClose              // no framing: the answer ends with the connection
	stDirty                   // past an answer, or framing not followed: never reused
	stSwitched                // 101: another protocol follows
)

// Tracker follows the answers read on one connection. Calls come from one
// request at a time (fasthttp's client does not pipeline), so it needs no
// lock. The zero Tracker is a fresh connection.
type Tracker struct {
	st      state
	writing bool // a request is going out; no answer byte read since
	used    bool // the connection carried a request before this one
	head    bool // the request in flight is HEAD: its answer has no body

	status   int   // of the answer being read; 0 until its status line is known
	length   int64 // Content-Length, -1 if none
	chunked  bool
	http10   bool  // Transfer-Encoding means nothing to HTTP/1.0
	left     int64 // body or chunk bytes still to come
	line     [lineMax]byte
	nline    int // bytes of the current line so far, beyond lineMax too
	overlong bool

	raw  syscall.RawConn
	peek func(fd uintptr) // bound once: Pending allocates nothing
	got  bool             // what the last peek found
	pb   [1]byte          // where the peek puts its byte
}

// Attach sets the socket Pending looks at (nil: none) and makes the
// Tracker fresh: a new connection.
func (t *Tracker) Attach(raw syscall.RawConn) {
	*t = Tracker{raw: raw, peek: t.peek}
	if t.peek == nil {
		t.peek = t.peekFD
	}
}

// Write is told of every write on the connection. When p starts a request
// on a connection that carried one before, it reports whether the
// connection is fit for it: the last answer ended exactly where the bytes
// read end and nothing waits on the socket. On false the caller must not
// write p there: it attaches a fresh connection and calls Write again.
func (t *Tracker) Write(p []byte) bool {
	if t.writing {
		return true // the rest of the same request
	}
	ok := !t.used || (t.st == stIdle && !t.Pending())
	t.writing, t.used = true, true
	t.head = bytes.HasPrefix(p, strHead)
	t.st, t.nline, t.status = stStatus, 0, 0
	return ok
}

var strHead = []byte("HEAD ")

// Switched says the answer being read is "101 Switching Protocols".
func (t *Tracker) Switched() bool { return t.st == stSwitched }

// Clean says the last answer ended exactly where the bytes read end.
func (t *Tracker) Clean() bool { return t.st == stIdle }

// Read follows b, the next bytes read from the connection.
func (t *Tracker) Read(b []byte) {
	t.writing = false
	for len(b) > 0 {
		switch t.st {
		case stIdle:
			t.st = stDirty // a byte nobody asked for
			return
		case stDirty, stUntilClose, stSwitched:
			return
		case stBody, stChunkData:
			k := min(int64(len(b)), t.left)
			t.left -= k
			b = b[k:]
			if t.left == 0 {
				if t.st == stBody {
					t.st = stIdle
				} else {
					t.st = stChunkEnd
				}
			}
		default:
			i := bytes.IndexByte(b, '\n')
			part := b
			if i >= 0 {
				part = b[:i]
			}
			if t.nline < lineMax {
				copy(t.line[t.nline:], part)
			}
			t.nline += len(part)
			if t.st == stStatus && t.status == 0 && t.nline >= len("HTTP/1.1 200") {
				// Known before the line ends: a 101 must fail the Read
				// that brings it.
				t.statusLine()
				if t.st != stStatus {
					return
				}
			}
			if i < 0 {
				return
			}
			b = b[i+1:]
			n := min(t.nline, lineMax)
			t.overlong = t.nline > lineMax
			t.nline = 0
			t.endLine(bytes.TrimSuffix(t.line[:n], strCR))
		}
	}
}

var strCR = []byte("\r")

// statusLine reads the status code from the start of a status line.
func (t *Tracker) statusLine() {
	l := t.line[:len("HTTP/1.1 200")]
	code := 0
	for _, c := range l[9:12] {
		if c < '0' || c > '9' {
			t.st = stDirty
			return
		}
		code = code*10 + int(c-'0')
	}
	if !bytes.HasPrefix(l, strHTTP) || l[8] != ' ' {
		t.st = stDirty
		return
	}
	t.status, t.http10 = code, l[7] == '0'
	if code == 101 {
		t.st = stSwitched
	}
}

var strHTTP = []byte("HTTP/1.")

// endLine handles one whole line, without its CRLF.
func (t *Tracker) endLine(l []byte) {
	switch t.st {
	case stStatus:
		if t.status == 0 { // shorter than a status line
			t.st = stDirty
			return
		}
		t.st, t.length, t.chunked = stHeader, -1, false
	case stHeader:
		if len(l) == 0 {
			t.endHeader()
			return
		}
		t.field(l)
	case stChunkSize:
		size, ok := chunkSize(l)
		switch {
		case !ok:
			t.st = stDirty
		case size == 0:
			t.st = stTrailer
		default:
			t.st, t.left = stChunkData, size
		}
	case stChunkEnd:
		if len(l) != 0 {
			t.st = stDirty
			return
		}
		t.st = stChunkSize
	case stTrailer:
		if len(l) == 0 {
			t.st = stIdle
		}
	}
}

// field reads the framing fields of a header line.
func (t *Tracker) field(l []byte) {
	k, v, ok := bytes.Cut(l, strColon)
	if !ok {
		if t.overlong {
			t.st = stDirty // the name may be past what was kept
		}
		return
	}
	k = bytes.TrimRight(k, " \t")
	switch {
	case bytes.EqualFold(k, strContentLength):
		n, ok := decimal(bytes.TrimSpace(v))
		if !ok || t.overlong || t.length >= 0 {
			t.st = stDirty
			return
		}
		t.length = n
	case bytes.EqualFold(k, strTransferEncoding):
		if t.http10 {
			return
		}
		if t.overlong || t.chunked || !bytes.EqualFold(bytes.TrimSpace(v), strChunked) {
			t.st = stDirty
			return
		}
		t.chunked = true
	}
}

var (
	strColon            = []byte(":")
	strContentLength    = []byte("Content-Length")
	strTransferEncoding = []byte("Transfer-Encoding")
	strChunked          = []byte("chunked")
)

// endHeader decides where the body ends once the header has.
func (t *Tracker) endHeader() {
	switch {
	case t.status < 200:
		t.st, t.status = stStatus, 0 // interim: the answer's status line follows
	case t.head || t.status == 204 || t.status == 304:
		t.st = stIdle
	case t.chunked:
		t.st = stChunkSize
	case t.length == 0:
		t.st = stIdle
	case t.length > 0:
		t.st, t.left = stBody, t.length
	default:
		t.st = stUntilClose
	}
}

func decimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// chunkSize reads the hex size at the start of a chunk-size line; an
// extension may follow.
func chunkSize(l []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(l); i++ {
		c := l[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return n, i > 0 && (c == ';' || c == ' ' || c == '\t')
		}
		if i >= 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, i > 0
}

// Pending says a byte, the end of the stream or an error waits on the idle
// socket: something the connection's peer sent unasked, or its close. It
// costs one non-blocking recvfrom with MSG_PEEK, which takes nothing.
func (t *Tracker) Pending() bool {
	if t.raw == nil {
		return false
	}
	t.got = false
	if err := t.raw.Control(t.peek); err != nil {
		return true
	}
	return t.got
}

func (t *Tracker) peekFD(fd uintptr) {
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&t.pb[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		// A byte, 0 (the peer closed) or an error: all say not clean.
		t.got = errno != syscall.EAGAIN
		return
	}
}
