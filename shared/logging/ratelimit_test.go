package logging

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func TestLimiter(t *testing.T) {
	var out syncBuffer
	log := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info})
	// An interval no burst can outlast, however slow the machine (-race):
	// the summaries come from Flush, not from a sleep.
	l := NewLimiter(log, time.Hour)
	for i := range 10_000 {
		l.Warn("upstream request failed", "i", i)
		l.Log(hclog.Warn, "other", "upstream body failed", "i", i)
	}
	if lines := out.lines(); len(lines) != 2 {
		t.Fatalf("got %d lines during the burst, want the 2 first messages:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	l.Flush()
	lines := out.lines()
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 2 messages and 2 summaries:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	var summaries int
	for _, line := range lines {
		if strings.Contains(line, "9999 similar messages suppressed") {
			summaries++
		}
	}
	if summaries != 2 {
		t.Fatalf("want two summaries of 9999:\n%s", strings.Join(lines, "\n"))
	}

	// After the interval, the message is logged again, and a suppressed
	// one is reported when the interval ends.
	var out2 syncBuffer
	l2 := NewLimiter(hclog.New(&hclog.LoggerOptions{Output: &out2, Level: hclog.Info}), 20*time.Millisecond)
	l2.Warn("upstream request failed", "i", "first")
	l2.Warn("upstream request failed", "i", "suppressed")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out2.String(), "1 similar messages suppressed") {
		if time.Now().After(deadline) {
			t.Fatalf("no summary at the end of the interval:\n%s", out2.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(40 * time.Millisecond) // past the interval
	l2.Warn("upstream request failed", "i", "again")
	if lines := out2.lines(); !strings.Contains(lines[len(lines)-1], "i=again") {
		t.Fatalf("message after the interval not logged: %q", lines[len(lines)-1])
	}
}

func TestLimiterDisabledLevel(t *testing.T) {
	var out syncBuffer
	l := NewLimiter(hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Error}), time.Second)
	l.Warn("x")
	if s := strings.TrimSpace(out.b.String()); s != "" {
		t.Fatalf("logged below the level: %q", s)
	}
	if len(l.keys) != 0 {
		t.Fatalf("remembered a key for a disabled level")
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b?c=d":              `/a/b?c=d`,
		"/x\r\nX-Injected: 1":   `/x\r\nX-Injected: 1`,
		"/\x1b[31mred":          `/\x1b[31mred`,
		"/\xff\\":               `/\xff\\`,
		strings.Repeat("a", 10): `aaaa...(10 bytes)`,
	} {
		max := 0
		if len(in) == 10 {
			max = 4
		}
		if got := Escape(in, max); got != want {
			t.Errorf("Escape(%q) = %s, want %s", in, got, want)
		}
	}
}
