package app

import (
	"bytes"

	"github.com/lanes-dev/lanes/shared/httpx"
	"github.com/lanes-dev/lanes/shared/upstream"
)

var (
	strConnection     = []byte("Connection")
	strContentLength  = []byte("Content-Length")
	strHost           = []byte("Host")
	strUpgrade        = []byte("Upgrade")
	strForwardedFor   = []byte("X-Forwarded-For")
	strForwardedProto = []byte("X-Forwarded-Proto")
	strForwardedHTTP  = []byte("http")
	strInternalPrefix = []byte("X-Lanes-")
	strCRLF           = []byte("\r\n")
	strHTTP11         = []byte("HTTP/1.1")
)

// isHopByHop reports whether the header named key must not be forwarded,
// given the tokens of the message's Connection header.
func isHopByHop(key []byte, connTokens [][]byte) bool { return upstream.IsHopByHop(key, connTokens) }

// nextHeader splits the first "Key: value" line off a serialized header
// block (fasthttp's AppendBytes output, start line already skipped). ok is
// false at the blank line that ends the block.
func nextHeader(b []byte) (key, value, rest []byte, ok bool) {
	for {
		i := bytes.Index(b, strCRLF)
		if i <= 0 {
			return nil, nil, nil, false
		}
		line, rest := b[:i], b[i+2:]
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			b = rest // not a header line; fasthttp never writes one
			continue
		}
		return line[:c], bytes.TrimLeft(line[c+1:], " \t"), rest, true
	}
}

// skipLine returns b after its first CRLF-terminated line.
func skipLine(b []byte) []byte {
	if i := bytes.Index(b, strCRLF); i >= 0 {
		return b[i+2:]
	}
	return nil
}

// isH2C reports whether an Upgrade value asks for HTTP/2 over cleartext
// only. That upgrade is optional for the client, so lanes declines it by
// dropping the header (RFC 9110 section 7.8) rather than refusing the
// request.
func isH2C(v []byte) bool {
	return bytes.EqualFold(bytes.TrimSpace(v), []byte("h2c"))
}

// originForm returns the path and query of a request target: an
// origin-form target ("/p?q") as it is, and those parts of an
// absolute-form one ("http://host/p?q"), whose host and any userinfo are
// dropped: the Host header names the site. ok is false for the asterisk
// and authority forms and for anything else.
func originForm(target []byte) (path []byte, ok bool) {
	if len(target) > 0 && target[0] == '/' {
		return target, true
	}
	i := bytes.Index(target, []byte("://"))
	if i <= 0 || !httpx.IsScheme(target[:i]) {
		return nil, false
	}
	rest := target[i+3:]
	j := bytes.IndexAny(rest, "/?#")
	if j < 0 {
		return []byte("/"), true
	}
	rest = rest[j:]
	if k := bytes.IndexByte(rest, '#'); k >= 0 {
		rest = rest[:k]
	}
	if len(rest) == 0 || rest[0] != '/' {
		return append([]byte("/"), rest...), true
	}
	return rest, true
}
