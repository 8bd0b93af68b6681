package logging

// quoteMax bounds a client-supplied string in a log line.
const quoteMax = 1024

// Quote is Escape for a path or method as fasthttp holds it, with a fast
// path for the common case: printable ASCII of a sane length is returned as
// it is, allocating only the string.
func Quote(b []byte) string {
	if len(b) <= quoteMax {
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
	return Escape(string(b), quoteMax)
}
