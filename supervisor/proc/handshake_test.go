package proc

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// Output a worker prints before its handshake is logged and skipped; the
// handshake and everything after it pass through unchanged.
func TestHandshakeOnly(t *testing.T) {
	const hs = "1|1|unix|/tmp/lanes-1/plugin123|grpc|\n"
	for _, tc := range []struct{ name, in, want, logged string }{
		{"clean", hs + "after\n", hs + "after\n", ""},
		{"banner", "starting my app v2\n\n" + hs, hs, "starting my app v2"},
		{"no newline before it", "ready? " + hs, hs, "ready?"},
		{"a digit before it", "v2" + hs, hs, "v2"},
		{"crlf", "junk\r\n" + hs, hs, "junk"},
		{"long line", strings.Repeat("x", 200<<10) + "\n" + hs, hs, "xxxx"},
		{"tcp and a cert", "junk\n1|2|tcp|127.0.0.1:1234|grpc|CERT\n", "1|2|tcp|127.0.0.1:1234|grpc|CERT\n", "junk"},
		{"no handshake", "junk\nmore junk\n", "", "more junk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
			got, err := io.ReadAll(newHandshakeOnly(io.NopCloser(strings.NewReader(tc.in)), log))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("passed %.80q, want %.80q", got, tc.want)
			}
			if !strings.Contains(logs.String(), tc.logged) || (tc.logged == "") != (logs.Len() == 0) {
				t.Errorf("logged %.200q, want it to hold %q", logs.String(), tc.logged)
			}
			if logs.Len() > 8<<10 {
				t.Errorf("logged %d bytes for one line", logs.Len())
			}
		})
	}
}

// Only the first preambleLines lines are logged.
func TestHandshakeOnlyBoundsTheLog(t *testing.T) {
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
	in := strings.Repeat("junk\n", 1000) + "1|1|unix|/x|grpc|\n"
	if _, err := io.ReadAll(newHandshakeOnly(io.NopCloser(strings.NewReader(in)), log)); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "\n"); n != preambleLines+1 {
		t.Errorf("%d log lines for 1000 lines of junk, want %d", n, preambleLines+1)
	}
}
