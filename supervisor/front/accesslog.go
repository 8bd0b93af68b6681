package front

import (
	"bytes"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/shared/logging"
	"github.com/lanes-dev/lanes/supervisor/lane"
)

// AccessLog writes the access log: one line per request, in hclog's text
// or JSON format (so it reads and parses like every other line lanesd
// writes), or in the combined format of Apache and nginx (which goaccess
// and log shippers parse), without hclog's per-call formatting cost. Lines are appended to
// a buffer under a lock and written out in whole lines, at most
// accessFlush after they were logged or as soon as accessChunk bytes are
// waiting; a request costs no write syscall of its own.
type AccessLog struct {
	name string // logger name, as hclog prints it
	json bool
	out  io.Writer

	mu      sync.Mutex
	buf     []byte
	spare   []byte
	scratch []byte      // a value being escaped
	timer   *time.Timer // made once: a timer per flush would cost allocations
	armed   bool        // timer runs
	wmu     sync.Mutex  // orders the writes of flushes
}

const (
	accessFlush = 100 * time.Millisecond
	// accessChunk is the most written at once: under PIPE_BUF, so a write
	// to a pipe never interleaves with another logger's line.
	accessChunk = 4096
)

// NewAccessLog returns an access log whose lines are named name (as
// hclog names a logger), in JSON or text, written to out.
func NewAccessLog(name string, json bool, out io.Writer) *AccessLog {
	a := &AccessLog{name: name, json: json, out: out, buf: make([]byte, 0, 2*accessChunk), spare: make([]byte, 0, 2*accessChunk)}
	a.timer = time.AfterFunc(time.Hour, a.Flush)
	a.timer.Stop()
	return a
}

// log writes the line of one request.
func (a *AccessLog) log(laneName string, o *record, f config.AccessFormat) {
	now := time.Now()
	a.mu.Lock()
	switch {
	case f == config.AccessCombined:
		a.buf = appendCombined(a.buf, now, laneName, o)
	case a.json:
		a.buf = appendJSON(a.buf, a.name, now, laneName, o)
	default:
		a.buf = a.appendText(a.buf, now, laneName, o)
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
func (a *AccessLog) Flush() {
	a.mu.Lock()
	a.flushLocked()
	a.mu.Unlock()
}

func (a *AccessLog) flushLocked() {
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

// accessFieldMax bounds each of Host, User-Agent, Referer and the query in
// an access line, and what a spool keeps of them.
const accessFieldMax = 1024

// Protocols as the combined format writes them.
const (
	protoHTTP11 = "HTTP/1.1"
	protoHTTP10 = "HTTP/1.0"
)

// captureAccess fills o's access-log fields from ctx: the slices stay
// ctx's (valid until serve returns; a spool copies them, keepAccess).
// User-Agent and Referer come from the raw header, whatever their case
// (fasthttp's Peek matches the exact name when names are not normalized).
func captureAccess(ctx *fasthttp.RequestCtx, o *record, query bool) {
	o.Proto = protoHTTP10
	if ctx.Request.Header.IsHTTP11() {
		o.Proto = protoHTTP11
	}
	o.Host = bound(ctx.Host())
	if query {
		o.Query = bound(ctx.URI().QueryString())
	}
	for b := ctx.Request.Header.RawHeaders(); len(b) > 0; {
		var k, v []byte
		k, v, b = nextField(b)
		switch {
		case len(k) == 0:
		case k[0]|0x20 == 'u' && o.UserAgent == nil && bytes.EqualFold(k, strUserAgent):
			o.UserAgent = bound(bytes.TrimSpace(v))
		case k[0]|0x20 == 'r' && o.Referer == nil && bytes.EqualFold(k, strReferer):
			o.Referer = bound(bytes.TrimSpace(v))
		}
	}
}

var (
	strUserAgent = []byte("User-Agent")
	strReferer   = []byte("Referer")
)

func bound(v []byte) []byte { return v[:min(len(v), accessFieldMax)] }

// keepAccess copies o's access-log fields into buf (a spool's, reused) and
// points o at the copies: a streamed response's line is written after the
// request's ctx is gone.
func keepAccess(buf []byte, o *record) []byte {
	buf = slices.Grow(buf[:0], len(o.Host)+len(o.UserAgent)+len(o.Referer)+len(o.Query))
	for _, f := range [...]*[]byte{&o.Host, &o.UserAgent, &o.Referer, &o.Query} {
		if *f != nil {
			i := len(buf)
			buf = append(buf, *f...)
			*f = buf[i:len(buf):len(buf)]
		}
	}
	return buf
}

// appendText writes the line in hclog's text shape. The key=value fields
// of older releases keep their order and form (scripts and tests parse
// them); the fields added since come where they read best.
func (a *AccessLog) appendText(b []byte, now time.Time, laneName string, o *record) []byte {
	b = now.AppendFormat(b, "2006-01-02T15:04:05.000Z0700")
	b = append(b, " [INFO]  "...)
	b = append(b, a.name...)
	b = append(b, ": request:"...)
	key := func(b []byte, k string) []byte {
		b = append(b, ' ')
		b = append(b, k...)
		return append(b, '=')
	}
	raw := func(b []byte, k string, v []byte) []byte {
		b = key(b, k)
		if len(v) > 0 && len(v) <= logging.QuoteMax {
			plain, printable := true, true
			for _, c := range v {
				if c < 0x2d || c > 0x7e || c == '\\' {
					plain = false
					if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
						printable = false
						break
					}
				}
			}
			switch {
			case plain:
				return append(b, v...)
			case printable: // logging.Quote(v) is v (a User-Agent, mostly)
				return appendTextValue(b, v)
			}
		}
		// As hclog prints logging.Quote(v), without its allocations.
		a.scratch = logging.AppendQuote(a.scratch[:0], v)
		return appendTextValue(b, a.scratch)
	}
	num := func(b []byte, k string, v int64) []byte { return strconv.AppendInt(key(b, k), v, 10) }
	dur := func(b []byte, k string, d time.Duration) []byte { return appendDuration(key(b, k), d) }
	b = appendTextValue(key(b, "lane"), laneName)
	if o.Client.IsValid() {
		b = o.Client.AppendTo(key(b, "client"))
	}
	b = raw(b, "method", o.Method)
	if len(o.Host) > 0 {
		b = raw(b, "host", o.Host)
	}
	b = raw(b, "path", o.Path)
	if len(o.Query) > 0 {
		b = raw(b, "query", o.Query)
	}
	b = num(b, "status", int64(o.Status))
	b = num(b, "bytes", int64(o.Bytes))
	b = num(b, "pid", int64(o.PID))
	b = dur(b, "queue", o.Queue)
	b = dur(b, "filter", o.Filter)
	b = dur(b, "run", o.Run)
	b = dur(b, "total", o.Total)
	if f := failure(o); f != "" {
		b = appendTextValue(key(b, "failed"), f)
	}
	if len(o.Referer) > 0 {
		b = raw(b, "referer", o.Referer)
	}
	if len(o.UserAgent) > 0 {
		b = raw(b, "user_agent", o.UserAgent)
	}
	return append(b, '\n')
}

// appendJSON writes the line as hclog's JSON format would, but with
// durations in seconds (as logging.Dur writes them).
func appendJSON(b []byte, name string, now time.Time, laneName string, o *record) []byte {
	key := func(b []byte, k string) []byte {
		b = append(b, ',', '"')
		b = append(b, k...)
		return append(b, '"', ':')
	}
	str := func(b []byte, k string, v []byte) []byte { return appendJSONString(key(b, k), v) }
	num := func(b []byte, k string, v int64) []byte { return strconv.AppendInt(key(b, k), v, 10) }
	sec := func(b []byte, k string, d time.Duration) []byte { return appendSeconds(key(b, k), d) }
	b = append(b, `{"@level":"info","@message":"request","@module":`...)
	b = appendJSONString(b, name)
	b = append(b, `,"@timestamp":"`...)
	b = now.AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, '"')
	b = appendJSONString(key(b, "lane"), laneName)
	if o.Client.IsValid() {
		b = append(o.Client.AppendTo(append(key(b, "client"), '"')), '"')
	}
	b = str(b, "method", o.Method)
	if len(o.Host) > 0 {
		b = str(b, "host", o.Host)
	}
	b = str(b, "path", o.Path)
	if len(o.Query) > 0 {
		b = str(b, "query", o.Query)
	}
	b = num(b, "status", int64(o.Status))
	b = num(b, "bytes", int64(o.Bytes))
	b = num(b, "pid", int64(o.PID))
	b = sec(b, "queue", o.Queue)
	b = sec(b, "filter", o.Filter)
	b = sec(b, "run", o.Run)
	b = sec(b, "total", o.Total)
	if f := failure(o); f != "" {
		b = appendJSONString(key(b, "failed"), f)
	}
	if len(o.Referer) > 0 {
		b = str(b, "referer", o.Referer)
	}
	if len(o.UserAgent) > 0 {
		b = str(b, "user_agent", o.UserAgent)
	}
	return append(b, '}', '\n')
}

// appendCombined writes the line in the combined format of Apache and
// nginx, then lanes' own fields as key=value (times in seconds), which
// parsers of the combined format ignore:
//
//	CLIENT - - [TIME] "METHOD PATH?QUERY PROTO" STATUS BYTES "REFERER" "USER_AGENT" lane=L queue=S filter=S run=S total=S [failed=F] host=H
func appendCombined(b []byte, now time.Time, laneName string, o *record) []byte {
	if o.Client.IsValid() {
		b = o.Client.AppendTo(b)
	} else {
		b = append(b, '-')
	}
	b = append(b, " - - ["...)
	b = now.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, `] "`...)
	b = appendCombinedEscaped(b, o.Method, false)
	b = append(b, ' ')
	b = appendCombinedEscaped(b, o.Path, true)
	if len(o.Query) > 0 {
		b = append(b, '?')
		b = appendCombinedEscaped(b, o.Query, true)
	}
	b = append(b, ' ')
	if o.Proto == "" {
		b = append(b, protoHTTP11...)
	} else {
		b = append(b, o.Proto...)
	}
	b = append(b, `" `...)
	b = strconv.AppendInt(b, int64(o.Status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(o.Bytes), 10)
	b = appendCombinedField(append(b, ' '), o.Referer)
	b = appendCombinedField(append(b, ' '), o.UserAgent)
	b = append(b, " lane="...)
	b = appendTextValue(b, laneName)
	sec := func(b []byte, k string, d time.Duration) []byte {
		b = append(b, ' ')
		b = append(b, k...)
		return appendSeconds(append(b, '='), d)
	}
	b = sec(b, "queue", o.Queue)
	b = sec(b, "filter", o.Filter)
	b = sec(b, "run", o.Run)
	b = sec(b, "total", o.Total)
	if f := failure(o); f != "" {
		b = append(b, " failed="...)
		b = append(b, f...)
	}
	if len(o.Host) > 0 {
		b = append(b, " host="...)
		b = appendCombinedEscaped(b, o.Host, true)
	}
	return append(b, '\n')
}

// appendCombinedField appends v in quotes, or "-" when empty, as nginx
// writes a header it logs.
func appendCombinedField(b, v []byte) []byte {
	if len(v) == 0 {
		return append(b, `"-"`...)
	}
	return append(appendCombinedEscaped(append(b, '"'), v, false), '"')
}

// appendCombinedEscaped appends v as nginx's access log does: '"', '\' and
// bytes outside printable ASCII as \xHH, so a client can neither end a
// quoted field nor write lines of its own. In a URL (url), a space — which
// a decoded path may hold — is %20, so the request field stays three
// words.
func appendCombinedEscaped(b, v []byte, url bool) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range v {
		switch {
		case c == ' ' && url:
			b = append(b, "%20"...)
		case c < 0x20 || c > 0x7e || c == '"' || c == '\\':
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendSeconds appends d in seconds to the microsecond ("0.000021", "0").
func appendSeconds(b []byte, d time.Duration) []byte {
	return logging.AppendSeconds(b, d.Round(time.Microsecond))
}

// failure names how a request failed after its status line was sent, for
// the access log ("": it did not).
func failure(o *record) string {
	switch {
	case o.Truncated:
		return "truncated"
	case o.Result == lane.ClientGone:
		return "client"
	}
	return ""
}

// appendTextValue appends v as hclog's text format does: in quotes, with
// '"' escaped, when it holds anything but '-' through '~'. (Client-sent
// values come through logging.Quote first, which escapes control
// characters and invalid UTF-8.)
func appendTextValue[T string | []byte](b []byte, v T) []byte {
	if len(v) == 0 {
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
func appendJSONString[T string | []byte](b []byte, v T) []byte {
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
		var rb [utf8.UTFMax]byte
		r, n := utf8.DecodeRune(rb[:copy(rb[:], v[i:])])
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
