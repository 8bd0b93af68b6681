// Package httpx holds the small pieces of HTTP/1.1 syntax that the front
// and the built-in worker both check on every request: tokens (field
// names), URI schemes and comma-separated field values. It works on the
// byte slices fasthttp hands out and allocates nothing.
package httpx

import "bytes"

// IsToken reports whether b is an RFC 9110 token, i.e. a valid field name:
// no spaces, controls or separators.
func IsToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChars[c] {
			return false
		}
	}
	return true
}

var tokenChars = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// IsScheme reports whether b is made of the characters of an RFC 3986
// scheme.
func IsScheme(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// AppendTokens appends the comma-separated elements of a field value (such
// as Connection's) to dst, without surrounding spaces or empty elements.
// The elements alias value.
func AppendTokens(dst [][]byte, value []byte) [][]byte {
	for len(value) > 0 {
		var tok []byte
		if i := bytes.IndexByte(value, ','); i >= 0 {
			tok, value = value[:i], value[i+1:]
		} else {
			tok, value = value, nil
		}
		if tok = bytes.Trim(tok, " \t"); len(tok) > 0 {
			dst = append(dst, tok)
		}
	}
	return dst
}

// ContainsFold reports whether k is one of names, ignoring case.
func ContainsFold(k []byte, names [][]byte) bool {
	for _, n := range names {
		if bytes.EqualFold(k, n) {
			return true
		}
	}
	return false
}
