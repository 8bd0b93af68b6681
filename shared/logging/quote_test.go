package logging

import (
	"strings"
	"testing"
)

// AppendQuote writes what Quote returns, without allocating.
func TestAppendQuote(t *testing.T) {
	for _, in := range []string{"", "/a/b?c=d", "/x\r\nX-Injected: 1", "/\x1b[31mred", "/\xff\\\"", "Mozilla/5.0 (X11; Linux) é",
		strings.Repeat("a", QuoteMax), strings.Repeat("é", QuoteMax)} {
		if got, want := string(AppendQuote([]byte("k="), []byte(in))), "k="+Quote([]byte(in)); got != want {
			t.Errorf("AppendQuote(%q) = %q, want %q", in, got, want)
		}
	}
	b := make([]byte, 0, 4096)
	in := []byte(strings.Repeat("\x1b", 100))
	if n := testing.AllocsPerRun(100, func() { b = AppendQuote(b[:0], in) }); n != 0 {
		t.Errorf("AppendQuote: %v allocations", n)
	}
}
