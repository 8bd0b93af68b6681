package logging

import (
	"strconv"
	"unsafe"
)

// QuoteMax bounds a client-supplied string in a log line.
const QuoteMax = 1024

// Quote is Escape for a path or method as fasthttp holds it, with a fast
// path for the common case: printable ASCII of a sane length is returned as
// it is, allocating only the string.
func Quote(b []byte) string {
	if len(b) <= QuoteMax {
		clean := true
		for _, c := range b {
			if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
				clean = false
				break
			}
		}
		if clean {
			return string(b)
		}
	}
	return Escape(string(b), QuoteMax)
}

// AppendQuote appends Quote(b) to dst without allocating (beyond growing
// dst), for writers that promise zero allocations per line.
func AppendQuote(dst, b []byte) []byte {
	n := len(b)
	if n > QuoteMax {
		b = b[:QuoteMax]
	}
	// strconv keeps nothing of the string, so it may alias b.
	i := len(dst)
	dst = strconv.AppendQuote(dst, unsafe.String(unsafe.SliceData(b), len(b)))
	dst = append(dst[:i], dst[i+1:len(dst)-1]...) // without strconv's quotes
	if n > QuoteMax {
		dst = append(dst, "...("...)
		dst = strconv.AppendInt(dst, int64(n), 10)
		dst = append(dst, " bytes)"...)
	}
	return dst
}
