// Package theme owns theming in the worker: it wraps an upstream's HTML page
// in the site's theme page, as the theme's rules say. The theme itself comes
// from fetchd (shared.ThemeService); this package keeps the last copy it got,
// parsed and compiled once per version, and keeps using it while fetchd is
// unreachable.
//
// Two paths theme a page, with the same output byte for byte: the
// streaming pass (stream.go), which reads the content page once with
// x/net/html's Tokenizer and fills the holes of the theme version's
// precompiled chunks (compile.go) with the elements the rules take; and
// the DOM path (rules.go), which parses the page, applies the rules with
// goquery/cascadia to a clone of the parsed theme and renders it. The DOM
// path serves what the streaming pass cannot follow (see stream.go),
// counted in Filter.Fallbacks.
//
// Which responses are themed: 2xx (but not 204, 205 or 206) text/html
// answers to anything but HEAD, with a body no larger than Options.MaxBody
// (after gzip decoding), in identity or gzip Content-Encoding, whose upstream
// did not opt out. Everything else passes through untouched, and a streamed
// body that turns out too large keeps streaming. An eligible page in which
// no replace rule finds its content (an HTML fragment) goes out as it came,
// as "unthemed".
//
// Opting out: an upstream that answers with the header "X-Lanes-Theme: off"
// gets its response passed through unthemed. The header is the worker's
// own: it is removed from every response, whatever its value.
package theme

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/shared/logging"
	"github.com/lanes-dev/lanes/shared/themepage"
)

// HeaderOptOut is the response header by which an upstream opts a response
// out of theming (value "off"). It never reaches the client.
const HeaderOptOut = "X-Lanes-Theme"

// Defaults for Options.
const (
	// DefaultMaxBody bounds the body read into memory for theming; larger
	// bodies stream through unthemed.
	DefaultMaxBody = 8 << 20
	// DefaultAskTimeout bounds one ThemeService call. fetchd bounds its own
	// work (stale_wait, fetch_timeout); this only keeps a wedged or
	// restarting fetchd from holding requests.
	DefaultAskTimeout = 250 * time.Millisecond
	// DefaultRetryAfter is how long the filter stops asking an unreachable
	// fetchd, serving its last copy (or unthemed) without waiting meanwhile.
	DefaultRetryAfter = time.Second
	// maxAskTimeout caps AskTimeout: theming is never worth a slow request.
	maxAskTimeout = 2 * time.Second
)

// AskTimeout returns the ThemeService deadline that suits fetchd's
// stale_wait: twice stale_wait, at least 50 ms and at most 2 s. A request never waits long for a theme: without one it is served
// unthemed.
func AskTimeout(staleWait time.Duration) time.Duration {
	return min(max(2*staleWait, 50*time.Millisecond), maxAskTimeout)
}

// Options tune a Filter. The zero value is usable.
type Options struct {
	MaxBody    int           // bytes; 0: DefaultMaxBody
	AskTimeout time.Duration // per ThemeService call; 0: DefaultAskTimeout
	RetryAfter time.Duration // pause after fetchd failed; 0: DefaultRetryAfter
	Log        hclog.Logger  // nil: no logging
	// Limits bound the theme pages the filter parses; zero:
	// themepage.Default, as fetchd applies.
	Limits themepage.Limits

	now func() time.Time // tests
}

// Filter themes responses for one theme. It is safe for concurrent use.
type Filter struct {
	name       string
	rules      []rule
	plan       streamPlan          // the streaming pass's view of rules
	path       themePath           // tests and benchmarks: force one path
	svc        shared.ThemeService // nil: every response is unthemed
	maxBody    int
	askTimeout time.Duration
	retryAfter time.Duration
	log        hclog.Logger
	now        func() time.Time

	limits  themepage.Limits // a theme page past them is refused unparsed
	limited *logging.Limiter // per-request warnings

	cur       atomic.Pointer[parsed]    // last theme copy fetchd gave, parsed
	fresh     atomic.Pointer[freshness] // until when fetchd said which version is fresh
	refused   atomic.Value              // string: the last version refused (see adopt)
	refusals  atomic.Int64              // theme versions refused so far
	adoptMu   sync.Mutex                // one parse at a time; see adopt
	parses    atomic.Int64              // theme parses so far (tests, metrics)
	fallbacks atomic.Int64              // themed requests that took the DOM path
	downUntil atomic.Int64              // unix nanos before which fetchd is not asked
	down      atomic.Bool               // fetchd's last call failed (logged once per change)
}

// New returns the filter for theme t, asking svc for the theme page. svc may
// be nil (no fetchd): responses then pass unthemed. Every selector of t's
// rules is compiled here; an invalid one is an error.
func New(t config.Theme, svc shared.ThemeService, opt Options) (*Filter, error) {
	rules, err := compileRules(t)
	if err != nil {
		return nil, err
	}
	f := &Filter{
		name:       t.Name,
		rules:      rules,
		svc:        svc,
		maxBody:    opt.MaxBody,
		askTimeout: min(opt.AskTimeout, maxAskTimeout),
		retryAfter: opt.RetryAfter,
		log:        opt.Log,
		now:        opt.now,
		plan:       planRules(rules),
	}
	if f.maxBody <= 0 {
		f.maxBody = DefaultMaxBody
	}
	if f.askTimeout <= 0 {
		f.askTimeout = DefaultAskTimeout
	}
	if f.retryAfter <= 0 {
		f.retryAfter = DefaultRetryAfter
	}
	if f.log == nil {
		f.log = hclog.NewNullLogger()
	}
	f.log = f.log.Named("theme").With("theme", t.Name)
	f.limited = logging.NewLimiter(f.log, time.Second)
	f.limits = opt.Limits
	if f.limits == (themepage.Limits{}) {
		f.limits = themepage.Default
	}
	if f.now == nil {
		f.now = time.Now
	}
	return f, nil
}

// Validate compiles t's selectors, for a config check.
func Validate(t config.Theme) error {
	_, err := compileRules(t)
	return err
}

// Result says what Apply did.
type Result struct {
	// State is "" when the response was not eligible for theming and passed
	// through; otherwise shared.ThemeFresh or ThemeStale (themed with a copy
	// in that state; stale also when fetchd was unreachable and the last
	// copy served) or ThemeUnthemed (no theme to be had, or a page no
	// replace rule finds content in: the response as it came).
	State string
	// Took is the filter time: asking fetchd, parsing a new theme version,
	// applying the rules and rendering. Reading the upstream body is not in
	// it. Zero when State is "".
	Took time.Duration
}

// Unreader is implemented by body streams that can take back what was read
// from them: after Unread, the stream yields prefix, then err if it is not
// nil, then (err nil) the rest of itself. A response body stream that is an
// io.Closer must implement it to be themed when its length is not announced:
// otherwise a body found too large could not stream on.
type Unreader interface {
	Unread(prefix []byte, err error)
}

// Apply themes resp in place when it is eligible (see the package doc);
// head tells whether it answers a HEAD request. It asks fetchd for the
// theme first: with none to be had the response is left as it is, its body
// still streaming. Otherwise the body is read into memory, bounded; a body
// that streamed and turned out too large streams on, untouched.
//
// A themed response has the theme's body, a Content-Length, no
// Content-Encoding (gzip is decoded), no ETag (the upstream's tag names the
// content, not the themed page; a theme change alone changes the page),
// no Content-MD5 and no Accept-Ranges (a range of the upstream's body is not
// a range of the themed one). Last-Modified stays. ctx bounds nothing by
// itself beyond Options.AskTimeout; it may carry cancellation.
func (f *Filter) Apply(ctx context.Context, head bool, resp *fasthttp.Response) (res Result) {
	h := &resp.Header
	optedOut := delHeader(h, HeaderOptOut)
	if optedOut || head || !themable(h) {
		return Result{}
	}
	gz, ok := encoding(h.ContentEncoding())
	if !ok {
		return Result{}
	}
	if n := resp.Header.ContentLength(); n > f.maxBody || (!resp.IsBodyStream() && len(resp.Body()) > f.maxBody) {
		return Result{} // too large, known before anything is read or asked
	}

	// Filter time is asking fetchd and theming; reading the upstream's
	// body between the two is run time.
	start := f.now()
	var read time.Duration
	defer func() {
		if res.State != "" {
			res.Took = f.now().Sub(start) - read
		}
	}()
	th, state := f.theme(ctx)
	if th == nil {
		// Nothing to theme with: the response goes on as it came, its
		// body still streaming.
		return Result{State: shared.ThemeUnthemed}
	}
	readStart := f.now()
	raw, ok := f.readBody(resp)
	read = f.now().Sub(readStart)
	if !ok {
		return Result{}
	}
	defer putBuf(raw)
	content := raw.B
	if gz {
		dec := getBuf()
		defer putBuf(dec)
		if err := gunzip(dec, content, f.maxBody); err != nil {
			f.log.Debug("gzip body not themed", "error", err)
			return f.unthemed(resp, raw)
		}
		content = dec.B
	}
	// The parser takes UTF-8 and the themed page is rendered in it: a page
	// declared in another charset (Shift_JIS, say) is decoded first and
	// goes out labelled utf-8, like the theme.
	u8, cs, err := themepage.ToUTF8(content, string(h.ContentType()))
	if err != nil {
		f.limited.Warn("content page does not decode from its charset; serving it unthemed", "charset", cs, "error", err)
		return f.unthemed(resp, raw)
	}
	decoded := cs != "utf-8"
	content = u8
	out := getBuf()
	defer putBuf(out)
	out.B = slices.Grow(out.B, len(content)+th.size)
	if err := f.themePage(out, th, content); err != nil {
		if errors.Is(err, errNotAPage) {
			f.log.Trace("page not themed: no replace rule finds its content")
		} else {
			// Per request (a content page nested past 512, say): limited.
			f.limited.Warn("theming failed; serving content unthemed", "error", err)
		}
		return f.unthemed(resp, raw)
	}
	// SetBody copies out and closes the upstream stream, read to its end.
	resp.SetBody(out.B)
	h.SetContentLength(len(out.B))
	h.Del(fasthttp.HeaderContentEncoding)
	if decoded {
		h.SetContentType("text/html; charset=utf-8")
	}
	delHeader(h, fasthttp.HeaderETag)
	delHeader(h, "Content-MD5")
	delHeader(h, fasthttp.HeaderAcceptRanges)
	return Result{State: state}
}

// unthemed puts the body read back as it came, headers untouched.
func (f *Filter) unthemed(resp *fasthttp.Response, raw *buffer) Result {
	resp.SetBody(raw.B)
	resp.Header.SetContentLength(len(raw.B))
	return Result{State: shared.ThemeUnthemed}
}

// themePath selects how pages are themed; tests and benchmarks force one.
type themePath int

const (
	pathAuto   themePath = iota // streaming, else the DOM path
	pathDOM                     // the DOM path only
	pathStream                  // the streaming pass only: errFallback is an error
)

// themePage writes content themed with th to out: by the streaming pass
// when it can follow the page and the rules, else by the DOM path
// (counted in Fallbacks).
func (f *Filter) themePage(out *buffer, th *parsed, content []byte) error {
	if f.path != pathDOM {
		err := f.renderStream(out, th, content)
		if err != errFallback || f.path == pathStream {
			return err
		}
		out.B = out.B[:0]
		f.fallbacks.Add(1)
	}
	return f.render(out, th, content)
}

// Fallbacks returns how many themed pages took the DOM path because the
// streaming pass could not follow them (a selector it cannot evaluate, a
// page the HTML parser would rearrange).
func (f *Filter) Fallbacks() int64 { return f.fallbacks.Load() }

// Refusals returns how many theme versions the filter refused as past its
// limits or unparsable.
func (f *Filter) Refusals() int64 { return f.refusals.Load() }

// Flush logs the per-request warnings the filter held back; call it when
// the worker stops.
func (f *Filter) Flush() { f.limited.Flush() }

// Parses returns how many times the filter has parsed a theme page: once
// per version it was given.
func (f *Filter) Parses() int64 { return f.parses.Load() }

// readBody returns resp's whole body when it is at most maxBody bytes. A
// body stream found larger is given back to resp, still streaming, and ok is
// false; so is a stream that failed, which then fails for the client too.
func (f *Filter) readBody(resp *fasthttp.Response) (*buffer, bool) {
	if !resp.IsBodyStream() {
		if len(resp.Body()) > f.maxBody {
			return nil, false
		}
		b := getBuf()
		b.B = append(b.B, resp.Body()...)
		return b, true
	}
	n := resp.Header.ContentLength()
	if n > f.maxBody {
		return nil, false
	}
	stream := resp.BodyStream()
	un, canUnread := stream.(Unreader)
	_, isCloser := stream.(io.Closer)
	if n < 0 && isCloser && !canUnread {
		return nil, false // could not be given back if too large
	}
	b := getBuf()
	if n >= 0 {
		b.B = slices.Grow(b.B, n+1) // +1: room to see EOF without growing
	}
	err := b.readFrom(stream, f.maxBody+1)
	if err == nil && len(b.B) <= f.maxBody {
		return b, true
	}
	// Too large, or broken: hand back what was read. The buffer goes with it.
	prefix := b.B
	switch {
	case canUnread:
		un.Unread(prefix, err)
	default:
		// Not a Closer (or it failed, so closing it loses nothing):
		// SetBodyStream closes the old stream and this one carries on.
		var rest io.Reader = stream
		if err != nil {
			rest = errReader{err}
		}
		resp.SetBodyStream(io.MultiReader(bytes.NewReader(prefix), rest), n)
	}
	if err != nil {
		f.log.Debug("upstream body failed while read for theming", "error", err)
	}
	return nil, false
}

// themable reports whether the status and Content-Type call for theming.
func themable(h *fasthttp.ResponseHeader) bool {
	switch s := h.StatusCode(); {
	case s < 200 || s > 299, s == fasthttp.StatusNoContent,
		s == fasthttp.StatusResetContent, s == fasthttp.StatusPartialContent:
		return false
	}
	ct := h.ContentType()
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return bytes.EqualFold(bytes.TrimSpace(ct), strTextHTML)
}

// encoding reports whether a Content-Encoding value is gzip, and whether it
// is one the filter can read at all (gzip or identity).
func encoding(ce []byte) (gzip, ok bool) {
	ce = bytes.TrimSpace(ce)
	switch {
	case len(ce) == 0, bytes.EqualFold(ce, strIdentity):
		return false, true
	case bytes.EqualFold(ce, strGzip), bytes.EqualFold(ce, strXGzip):
		return true, true
	}
	return false, false
}

// delHeader removes every header named name, whatever its case (the proxy
// keeps header names as the upstream sent them), and reports whether any
// had the value "off".
func delHeader(h *fasthttp.ResponseHeader, name string) (off bool) {
	var keys [][]byte
	for k, v := range h.All() {
		if bytes.EqualFold(k, []byte(name)) {
			keys = append(keys, bytes.Clone(k))
			off = off || bytes.EqualFold(bytes.TrimSpace(v), strOff)
		}
	}
	for _, k := range keys {
		h.DelBytes(k)
	}
	return off
}

var (
	strTextHTML = []byte("text/html")
	strIdentity = []byte("identity")
	strGzip     = []byte("gzip")
	strXGzip    = []byte("x-gzip")
	strOff      = []byte("off")
)

// errReader fails every Read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
