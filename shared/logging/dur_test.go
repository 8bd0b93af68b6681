package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// A Dur reads as a duration in text lines and as seconds in JSON lines.
func TestDur(t *testing.T) {
	d := 2*time.Second + 875*time.Microsecond
	var text, js bytes.Buffer
	hclog.New(&hclog.LoggerOptions{Output: &text}).Info("worker exited", "uptime", Dur(d))
	hclog.New(&hclog.LoggerOptions{Output: &js, JSONFormat: true}).Info("worker exited", "uptime", Dur(d), "raw", d)
	if !strings.Contains(text.String(), " uptime=2.000875s") {
		t.Errorf("text line: %q", text.String())
	}
	var m map[string]any
	if err := json.Unmarshal(js.Bytes(), &m); err != nil {
		t.Fatalf("%v: %q", err, js.String())
	}
	if m["uptime"] != 2.000875 {
		t.Errorf("JSON uptime = %v (%T), want 2.000875 seconds: %q", m["uptime"], m["uptime"], js.String())
	}
	if m["raw"] != float64(d) {
		t.Errorf("a plain time.Duration is no longer nanoseconds (%v): use Dur", m["raw"])
	}
	for in, want := range map[time.Duration]string{0: "0", 21 * time.Microsecond: "0.000021", 2 * time.Second: "2", time.Nanosecond: "0.000000001", -time.Millisecond: "-0.001"} {
		if got := string(AppendSeconds(nil, in)); got != want {
			t.Errorf("AppendSeconds(%v) = %s, want %s", in, got, want)
		}
	}
}
