package app

import "bytes"

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
	strConnection      = []byte("Connection")
	strContentLength   = []byte("Content-Length")
	strHost            = []byte("Host")
	strForwardedProto  = []byte("X-Forwarded-Proto")
	strForwardedHeader = "X-Forwarded-Proto"
	strForwardedHTTP   = []byte("http")
	strCRLF            = []byte("\r\n")
	strHTTP11          = []byte("HTTP/1.1")
)

// isHopByHop reports whether the header named key must not be forwarded,
// given the tokens of the message's Connection header.
func isHopByHop(key []byte, connTokens [][]byte) bool {
	for _, h := range hopByHop {
		if bytes.EqualFold(key, h) {
			return true
		}
	}
	for _, t := range connTokens {
		if bytes.EqualFold(key, t) {
			return true
		}
	}
	return false
}

// appendTokens appends the comma-separated tokens of a Connection header
// value to dst. The tokens alias value.
func appendTokens(dst [][]byte, value []byte) [][]byte {
	for len(value) > 0 {
		var tok []byte
		if i := bytes.IndexByte(value, ','); i >= 0 {
			tok, value = value[:i], value[i+1:]
		} else {
			tok, value = value, nil
		}
		tok = bytes.Trim(tok, " \t")
		if len(tok) > 0 {
			dst = append(dst, tok)
		}
	}
	return dst
}

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
