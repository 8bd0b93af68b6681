package front

import (
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// Issue 7 item 13: fasthttp's lines about bad requests never carry the
// request's bytes (credentials), and a flood of them is a few lines.
func TestFrontLoggerHidesRequestAndLimits(t *testing.T) {
	var out syncBuffer
	l := newFrontLogger(hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info}))
	for range 1000 {
		l.Printf("error when serving connection %q<->%q: %v", "127.0.0.1:8080", "127.0.0.1:5555",
			`error when reading request headers: cannot find whitespace in the first line of request: "GET /\r\nAuthorization: Bearer s3cret\r\n". Buffer size=60, contents: "GET /\r\nAuthorization: Bearer s3cret\r\nCookie: sid=s3cret\r\n\r\n"`)
	}
	got := out.String()
	if strings.Contains(got, "s3cret") {
		t.Errorf("credentials logged:\n%s", got)
	}
	if n := strings.Count(got, "\n"); n > 3 || n == 0 {
		t.Errorf("1000 identical errors gave %d lines:\n%s", n, got)
	}
}
