package front

import (
	"bytes"
	"net"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/httpx"
)

// What the front refuses before a request reaches a lane. Each is the
// client's error, answered at once on a connection then closed: none may
// cost a worker or take one out of rotation.
type refusal struct {
	status int
	msg    string
}

var (
	refuseTarget     = &refusal{fasthttp.StatusBadRequest, "bad request target\n"}
	refuseUserinfo   = &refusal{fasthttp.StatusBadRequest, "credentials in the request target are not accepted\n"}
	refuseHeaderName = &refusal{fasthttp.StatusBadRequest, "invalid header name\n"}
	refuseUpgrade    = &refusal{fasthttp.StatusNotImplemented, "protocol upgrades (WebSocket) are not supported by lanes\n"}
	refuseBodyLarge  = &refusal{fasthttp.StatusRequestEntityTooLarge, "request body too large\n"}
	refuseBody       = &refusal{fasthttp.StatusBadRequest, "request body incomplete\n"}
	refuseBodyTime   = &refusal{fasthttp.StatusRequestTimeout, "request timeout\n"}
	refuseSpool      = &refusal{fasthttp.StatusInternalServerError, "cannot buffer the request body\n"}
)

var (
	strConnection      = []byte("Connection")
	strUpgrade         = []byte("Upgrade")
	strTrailer         = []byte("Trailer")
	strHost            = []byte("Host")
	strContentLength   = []byte("Content-Length")
	strTransferEnc     = []byte("Transfer-Encoding")
	strForwardedFor    = []byte("X-Forwarded-For")
	strForwardedProto  = []byte("X-Forwarded-Proto")
	strForwardedHost   = []byte("X-Forwarded-Host")
	strForwarded       = []byte("Forwarded")
	strHTTP            = []byte("http")
	strH2C             = []byte("h2c")
	strSchemeSeparator = []byte("://")
	strInternalPrefix  = []byte("X-Lanes-")
)

// hopByHop are the fields that describe the client's connection, not the
// request (RFC 9110 section 7.6.1); Connection and Upgrade are handled
// apart.
var hopByHop = [...][]byte{
	[]byte("Keep-Alive"),
	[]byte("Proxy-Connection"),
	[]byte("Te"),
	// The front has answered the expectation and read the body already.
	[]byte("Expect"),
}

// forward is the per-request scratch of prepare.
type forward struct {
	del    [][]byte // header names to delete, as the client wrote them
	tokens [][]byte // the Connection header's tokens
	xff    []byte
}

// maxDeleted bounds the header names prepare collects for deletion; a
// request naming more in Connection is refused as malformed.
const maxDeleted = 64

// prepare turns the client's request into the one the worker gets, in
// place: the target in origin form, the client's connection-level fields
// gone (Connection and every field it names are removed before lanes adds
// its own, so a client cannot delete X-Forwarded-For by naming it), one
// X-Forwarded-For with the client's address appended once, and
// X-Forwarded-Proto and X-Forwarded-Host set by lanes, and no X-Lanes-*
// field of the client's. The front server
// keeps header names as received, so every comparison is
// case-insensitive and every deletion uses the name as the client wrote it.
func prepare(req *fasthttp.Request, ip net.IP, f *forward) *refusal {
	h := &req.Header
	if r := originTarget(req); r != nil {
		return r
	}

	// The raw header section as received: every field once, in order,
	// whatever fasthttp keeps apart (Host, Content-Type, Cookie, ...), and
	// nothing from a trailer.
	raw := h.RawHeaders()
	f.del, f.tokens, f.xff = f.del[:0], f.tokens[:0], f.xff[:0]
	upgrade := false
	for b := raw; len(b) > 0; {
		var k, v []byte
		k, v, b = nextField(b)
		if k == nil {
			continue
		}
		if !httpx.IsToken(k) {
			return refuseHeaderName
		}
		// Most fields are none of ours: the first letter says so cheaply.
		switch k[0] | 0x20 {
		case 'c', 'u', 'x', 'f', 'k', 'p', 't', 'e':
		default:
			continue
		}
		switch {
		case bytes.EqualFold(k, strConnection):
			f.tokens = httpx.AppendTokens(f.tokens, v)
			f.del = append(f.del, k)
		case bytes.EqualFold(k, strUpgrade):
			if !bytes.EqualFold(bytes.TrimSpace(v), strH2C) {
				upgrade = true
			}
			f.del = append(f.del, k) // h2c is optional for the client: declined by dropping it
		case bytes.EqualFold(k, strForwardedFor):
			// Every copy, whatever its case, joined into one field.
			if v = bytes.TrimSpace(v); len(v) > 0 {
				if len(f.xff) > 0 {
					f.xff = append(f.xff, ", "...)
				}
				f.xff = append(f.xff, v...)
			}
			f.del = append(f.del, k)
		case bytes.EqualFold(k, strForwardedProto), bytes.EqualFold(k, strForwardedHost),
			bytes.EqualFold(k, strForwarded), isHopByHop(k), isInternal(k):
			f.del = append(f.del, k)
		}
	}
	if upgrade {
		return refuseUpgrade
	}
	if len(f.tokens) > 0 {
		for b := raw; len(b) > 0; {
			var k []byte
			k, _, b = nextField(b)
			if k == nil || !httpx.ContainsFold(k, f.tokens) {
				continue
			}
			// Framing and the Host are never the client's to drop.
			if bytes.EqualFold(k, strHost) || bytes.EqualFold(k, strContentLength) || bytes.EqualFold(k, strTransferEnc) {
				continue
			}
			f.del = append(f.del, k)
		}
	}
	if httpx.ContainsFold(strForwardedFor, f.tokens) {
		f.xff = f.xff[:0] // the client's copies were for its hop only
	}
	if len(f.del) > maxDeleted {
		return refuseHeaderName
	}
	for _, k := range f.del {
		delHeader(h, k)
	}
	// The client's Connection: close is for its connection, not ours to
	// the worker, which stays persistent.
	h.ResetConnectionClose()

	if len(f.xff) > 0 {
		f.xff = append(f.xff, ", "...)
	}
	f.xff, _ = ip.AppendText(f.xff) // IPv4 dotted, IPv6 in RFC 5952 form
	h.SetBytesKV(strForwardedFor, f.xff)
	h.SetBytesKV(strForwardedProto, strHTTP)
	if host := h.Host(); len(host) > 0 {
		h.SetBytesKV(strForwardedHost, host)
	}
	// A forwarded body without a type stays without one.
	h.SetNoDefaultContentType(true)
	return nil
}

// originTarget checks the request target and rewrites an absolute-form one
// ("http://host/p?q") to origin form, its authority becoming the Host
// (RFC 9112 section 3.2.2). Userinfo is refused rather than dropped
// (RFC 9110 section 4.2.4): fasthttp would turn it into an Authorization
// header. The asterisk and authority forms are refused: the data plane
// carries neither OPTIONS * nor CONNECT.
func originTarget(req *fasthttp.Request) *refusal {
	t := req.Header.RequestURI()
	if len(t) > 0 && t[0] == '/' {
		return nil
	}
	i := bytes.Index(t, strSchemeSeparator)
	if i <= 0 || !httpx.IsScheme(t[:i]) {
		return refuseTarget
	}
	scheme := t[:i]
	if !bytes.EqualFold(scheme, []byte("http")) && !bytes.EqualFold(scheme, []byte("https")) {
		return refuseTarget
	}
	rest := t[i+3:]
	end := bytes.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, path := rest[:end], rest[end:]
	if bytes.IndexByte(authority, '@') >= 0 {
		return refuseUserinfo
	}
	if len(authority) == 0 || !validAuthority(authority) {
		return refuseTarget
	}
	if k := bytes.IndexByte(path, '#'); k >= 0 {
		path = path[:k]
	}
	var buf [256]byte
	target := buf[:0]
	if len(path) == 0 || path[0] != '/' {
		target = append(target, '/')
	}
	target = append(target, path...)
	req.Header.SetHostBytes(authority)
	req.SetRequestURIBytes(target)
	return nil
}

// validAuthority says b is a plausible host[:port]: no spaces, controls,
// or characters a Host header cannot hold.
func validAuthority(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' || c == '`' || c == '{' || c == '|' || c == '}' {
			return false
		}
	}
	return true
}

// delHeader deletes every field named k (as the client wrote it). fasthttp
// keeps a few fields apart under their canonical name, so those are also
// deleted by it.
func delHeader(h *fasthttp.RequestHeader, k []byte) {
	h.DelBytes(k)
	for _, c := range canonical {
		if bytes.EqualFold(k, c) && !bytes.Equal(k, c) {
			h.DelBytes(c)
		}
	}
}

// canonical are the fields fasthttp stores outside its generic list.
var canonical = [...][]byte{
	[]byte("Host"), []byte("Content-Type"), []byte("User-Agent"), []byte("Cookie"),
	[]byte("Connection"), []byte("Trailer"),
}

// dropTrailers removes any trailer fields a chunked request body brought
// and the Trailer announcement, so that nothing from a trailer section is
// forwarded, least of all merged into the header section (fasthttp moves
// trailer values into the header when the announcement goes). A field
// that is both in the header section and the trailer keeps its header
// values.
func dropTrailers(h *fasthttp.RequestHeader) {
	keys := h.PeekTrailerKeys()
	if len(keys) == 0 && len(h.Peek("Trailer")) == 0 {
		return
	}
	raw := h.RawHeaders()
	var names [16][]byte
	ks := names[:0]
	for _, k := range keys {
		ks = append(ks, append([]byte(nil), k...))
	}
	for _, k := range ks {
		h.DelBytes(k)
		for b := raw; len(b) > 0; {
			var rk, rv []byte
			rk, rv, b = nextField(b)
			if rk != nil && bytes.EqualFold(rk, k) {
				h.AddBytesKV(rk, rv)
			}
		}
	}
	h.DelBytes(strTrailer)
}

// nextField splits the first field line off a raw header section. k is
// nil for a line that is not a field (an obs-fold continuation).
func nextField(b []byte) (k, v, rest []byte) {
	line := b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line, rest = b[:i], b[i+1:]
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
		return nil, nil, rest
	}
	c := bytes.IndexByte(line, ':')
	if c < 0 {
		return line, nil, rest // not a token: refused
	}
	return line[:c], bytes.Trim(line[c+1:], " \t"), rest
}

// isInternal reports whether k is one of lanes' own X-Lanes-* fields: a
// client's copy would reach the worker and the upstream as if lanes had
// set it (the front sets none on requests today; any it adds later go on
// after prepare has removed the client's).
func isInternal(k []byte) bool {
	return len(k) >= len(strInternalPrefix) && bytes.EqualFold(k[:len(strInternalPrefix)], strInternalPrefix)
}

func isHopByHop(k []byte) bool {
	for _, h := range hopByHop {
		if bytes.EqualFold(k, h) {
			return true
		}
	}
	return false
}
