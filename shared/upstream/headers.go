package upstream

import (
	"bytes"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/httpx"
)

// hopByHop are the header fields that describe one connection, not the
// message (RFC 9110 section 7.6.1), so a proxy drops them in both directions,
// along with every field the Connection header names. Matching is
// case-insensitive: header names are forwarded as received, not normalized.
var hopByHop = [...][]byte{
	[]byte("Connection"),
	[]byte("Keep-Alive"),
	[]byte("Proxy-Connection"),
	[]byte("Proxy-Authenticate"),
	[]byte("Proxy-Authorization"),
	[]byte("Te"),
	[]byte("Trailer"),
	[]byte("Transfer-Encoding"),
	[]byte("Upgrade"),
}

var (
	strConnection     = []byte("Connection")
	strContentLength  = []byte("Content-Length")
	strInternalPrefix = []byte("X-Lanes-")
	strThemeOptOut    = []byte(HeaderThemeOptOut)
)

// HeaderThemeOptOut is the one X-Lanes- response header an upstream may
// send: it opts a response out of theming (worker/theme reads and removes
// it; without a theme it passes through).
const HeaderThemeOptOut = "X-Lanes-Theme"

// IsHopByHop reports whether the header named key must not be forwarded,
// given the tokens of the message's Connection header.
func IsHopByHop(key []byte, connTokens [][]byte) bool {
	for _, h := range hopByHop {
		if bytes.EqualFold(key, h) {
			return true
		}
	}
	return httpx.ContainsFold(key, connTokens)
}

// IsInternal reports whether a response header is one of lanes' own
// (X-Lanes-*), which only lanes may set: the front reads them, so an
// upstream's copy would forge lanes' timings. The theme opt-out is the
// exception.
func IsInternal(key []byte) bool {
	return len(key) >= len(strInternalPrefix) && bytes.EqualFold(key[:len(strInternalPrefix)], strInternalPrefix) &&
		!bytes.EqualFold(key, strThemeOptOut)
}

// CopyHeader adds src's end-to-end fields to dst: not the hop-by-hop
// ones, nor those Connection names, nor Content-Length (the framing
// belongs to the other connection), nor lanes' own. Status and body are
// the caller's. tokens is scratch space, returned for reuse.
//
// Field by field rather than CopyTo: CopyTo would also bring the
// upstream's framing (Content-Length, Connection: close, HTTP/1.0).
func CopyHeader(dst, src *fasthttp.ResponseHeader, tokens [][]byte) [][]byte {
	tokens = tokens[:0]
	for k, v := range src.All() {
		if bytes.EqualFold(k, strConnection) {
			tokens = httpx.AppendTokens(tokens, v)
		}
	}
	for k, v := range src.All() {
		if bytes.EqualFold(k, strContentLength) || IsHopByHop(k, tokens) || IsInternal(k) {
			continue
		}
		dst.AddBytesKV(k, v)
	}
	return tokens
}
