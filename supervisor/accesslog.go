package supervisor

import (
	"bytes"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/lanes-dev/lanes/shared/logging"
	"github.com/lanes-dev/lanes/supervisor/lane"
)

// accessLog writes the access log: one line per request, in hclog's text
// or JSON format (so it reads and parses like every other line lanesd
// writes), without hclog's per-call formatting cost. Lines are appended to
// a buffer under a lock and written out in whole lines, at most
// accessFlush after they were logged or as soon as accessChunk bytes are
// waiting; a request costs no write syscall of its own.
type accessLog struct {
	name string // logger name, as hclog prints it
	json bool
	out  io.Writer

	mu    sync.Mutex
	buf   []byte
	spare []byte
	timer *time.Timer // made once: a timer per flush would cost allocations
	armed bool        // timer runs
	wmu   sync.Mutex  // orders the writes of flushes
}

const (
	accessFlush = 100 * time.Millisecond
	// accessChunk is the most written at once: under PIPE_BUF, so a write
	// to a pipe never interleaves with another logger's line.
	accessChunk = 4096
)

func newAccessLog(name string, json bool, out io.Writer) *accessLog {
	a := &accessLog{name: name, json: json, out: out, buf: make([]byte, 0, 2*accessChunk), spare: make([]byte, 0, 2*accessChunk)}
	a.timer = time.AfterFunc(time.Hour, a.Flush)
	a.timer.Stop()
	return a
}

// log writes the line of one request.
func (a *accessLog) log(l *lane.Lane, o *lane.Outcome) {
	now := time.Now()
	a.mu.Lock()
	if a.json {
		a.buf = a.appendJSON(a.buf, now, l, o)
	} else {
		a.buf = a.appendText(a.buf, now, l, o)
	}
	switch {
	case len(a.buf) >= accessChunk:
		a.flushLocked()
	case !a.armed:
		a.timer.Reset(accessFlush)
		a.armed = true
	}
	a.mu.Unlock()
}

// Flush writes out what is buffered.
func (a *accessLog) Flush() {
	a.mu.Lock()
	a.flushLocked()
	a.mu.Unlock()
}

func (a *accessLog) flushLocked() {
	if a.armed {
		a.timer.Stop()
		a.armed = false
	}
	if len(a.buf) == 0 {
		return
	}
	b, full := a.buf, a.buf[:0]
	a.buf, a.spare = a.spare[:0], nil
	a.wmu.Lock()
	a.mu.Unlock()
	for len(b) > 0 {
		n := len(b)
		if n > accessChunk {
			if i := bytes.LastIndexByte(b[:accessChunk], '\n'); i >= 0 {
				n = i + 1
			}
		}
		_, _ = a.out.Write(b[:n])
		b = b[n:]
	}
	a.wmu.Unlock()
	a.mu.Lock()
	if a.spare == nil {
		// full, not b[:0]: b has been sliced to its end, and a spare of
		// what capacity was left would be reallocated by the next lines.
		a.spare = full
	}
}

func (a *accessLog) appendText(b []byte, now time.Time, l *lane.Lane, o *lane.Outcome) []byte {
	b = now.AppendFormat(b, "2006-01-02T15:04:05.000Z0700")
	b = append(b, " [INFO]  "...)
	b = append(b, a.name...)
	b = append(b, ": request:"...)
	kv := func(b []byte, k, v string) []byte {
		b = append(b, ' ')
		b = append(b, k...)
		b = append(b, '=')
		return appendTextValue(b, v)
	}
	raw := func(b []byte, k string, v []byte) []byte {
		b = append(b, ' ')
		b = append(b, k...)
		b = append(b, '=')
		for _, c := range v {
			if c < 0x2d || c > 0x7e || c == '\\' || len(v) > 1024 {
				return appendTextValue(b, logging.Quote(v))
			}
		}
		return append(b, v...)
	}
	num := func(b []byte, k string, v int64) []byte {
		b = append(b, ' ')
		b = append(b, k...)
		b = append(b, '=')
		return strconv.AppendInt(b, v, 10)
	}
	dur := func(b []byte, k string, d time.Duration) []byte {
		b = append(b, ' ')
		b = append(b, k...)
		b = append(b, '=')
		return appendDuration(b, d)
	}
	b = kv(b, "lane", l.Name())
	b = raw(b, "method", o.Method)
	b = raw(b, "path", o.Path)
	b = num(b, "status", int64(o.Status))
	b = num(b, "bytes", int64(o.Bytes))
	b = num(b, "pid", int64(o.PID))
	b = dur(b, "queue", o.Queue)
	b = dur(b, "filter", o.Filter)
	b = dur(b, "run", o.Run)
	b = dur(b, "total", o.Total)
	if f := failure(o); f != "" {
		b = kv(b, "failed", f)
	}
	return append(b, '\n')
}

func (a *accessLog) appendJSON(b []byte, now time.Time, l *lane.Lane, o *lane.Outcome) []byte {
	str := func(b []byte, k, v string) []byte {
		b = append(b, ',', '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		return appendJSONString(b, v)
	}
	num := func(b []byte, k string, v int64) []byte {
		b = append(b, ',', '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		return strconv.AppendInt(b, v, 10)
	}
	b = append(b, `{"@level":"info","@message":"request","@module":`...)
	b = appendJSONString(b, a.name)
	b = append(b, `,"@timestamp":"`...)
	b = now.AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, '"')
	b = str(b, "lane", l.Name())
	b = str(b, "method", string(o.Method))
	b = str(b, "path", string(o.Path))
	b = num(b, "status", int64(o.Status))
	b = num(b, "bytes", int64(o.Bytes))
	b = num(b, "pid", int64(o.PID))
	// Durations in nanoseconds, as hclog's JSON writes a time.Duration.
	b = num(b, "queue", int64(o.Queue))
	b = num(b, "filter", int64(o.Filter))
	b = num(b, "run", int64(o.Run))
	b = num(b, "total", int64(o.Total))
	if f := failure(o); f != "" {
		b = str(b, "failed", f)
	}
	return append(b, '}', '\n')
}

// failure names how a request failed after its status line was sent, for
// the access log ("": it did not).
func failure(o *lane.Outcome) string {
	switch {
	case o.Truncated:
		return "truncated"
	case o.Result == lane.ClientGone:
		return "client"
	}
	return ""
}

// appendTextValue appends v as hclog's text format does: in quotes, with
// '"' escaped, when it holds anything but '-' through '~'. (Paths and
// methods come through logging.Quote first, which escapes control
// characters and invalid UTF-8.)
func appendTextValue(b []byte, v string) []byte {
	if v == "" {
		return append(b, `""`...)
	}
	plain := true
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x2d || c > 0x7e {
			plain = false
			break
		}
	}
	if plain {
		return append(b, v...)
	}
	b = append(b, '"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' {
			b = append(b, '\\')
		}
		b = append(b, v[i])
	}
	return append(b, '"')
}

// appendJSONString appends v as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, as
// encoding/json does.
func appendJSONString(b []byte, v string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, v[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

// appendDuration appends d as hclog writes it (time.Duration's String).
func appendDuration(b []byte, d time.Duration) []byte { return appendTextValue(b, d.String()) }
