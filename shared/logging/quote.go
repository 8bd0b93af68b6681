package logging

import "strconv"

// Quote returns b, from a client (a path, a method), fit for a log line:
// printable UTF-8 as it is, control characters and invalid bytes escaped,
// so that a request cannot forge log lines or terminal escapes. It
// allocates only the string it returns.
func Quote(b []byte) string {
	for _, c := range b {
		if c < 0x20 || c == 0x7f || c >= 0x80 || c == '"' || c == '\\' {
			q := strconv.QuoteToASCII(string(b))
			return q[1 : len(q)-1]
		}
	}
	return string(b)
}
