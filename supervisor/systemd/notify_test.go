package systemd

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// listenNotify makes a NOTIFY_SOCKET for the test, as systemd does, at
// name (a path, or "@name" for the abstract namespace).
func listenNotify(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return c
}

// next reads one datagram as its lines, or fails after wait.
func next(t *testing.T, c *net.UnixConn, wait time.Duration) []string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification within %s: %v", wait, err)
	}
	return strings.Split(string(buf[:n]), "\n")
}

// none fails if a datagram arrives within wait.
func none(t *testing.T, c *net.UnixConn, wait time.Duration) {
	t.Helper()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("unexpected notification %q", buf[:n])
	}
}

func hasLine(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestSystemdNotifyMessages(t *testing.T) {
	c := listenNotify(t, filepath.Join(t.TempDir(), "notify"))
	n := NewNotifier(hclog.NewNullLogger())
	if !n.Enabled() {
		t.Fatal("NOTIFY_SOCKET set, notifier disabled")
	}
	for _, tc := range []struct {
		send func()
		want []string // exact lines, or "KEY=" for a line with any value
	}{
		{func() { n.Ready("2 lanes,\n3 workers") }, []string{"READY=1", "MONOTONIC_USEC=", "STATUS=2 lanes, 3 workers"}},
		{n.Reloading, []string{"RELOADING=1", "MONOTONIC_USEC=", "STATUS=reloading the config"}},
		{func() { n.Stopping("stopping") }, []string{"STOPPING=1", "STATUS=stopping"}},
		{func() { n.Status("busy") }, []string{"STATUS=busy"}},
	} {
		tc.send()
		got := next(t, c, time.Second)
		if len(got) != len(tc.want) {
			t.Fatalf("got %q, want %q", got, tc.want)
		}
		for i, w := range tc.want {
			if strings.HasSuffix(w, "=") {
				if v, ok := strings.CutPrefix(got[i], w); !ok {
					t.Errorf("line %d: got %q, want %s…", i, got[i], w)
				} else if _, err := strconv.ParseUint(v, 10, 64); err != nil {
					t.Errorf("line %d: %q is not a number of microseconds", i, got[i])
				}
			} else if got[i] != w {
				t.Errorf("line %d: got %q, want %q", i, got[i], w)
			}
		}
	}
}

// systemd may name its socket in the abstract namespace ("@…").
func TestSystemdNotifyAbstractSocket(t *testing.T) {
	c := listenNotify(t, "@lanes-test-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	NewNotifier(hclog.NewNullLogger()).Ready("up")
	if got := next(t, c, time.Second); got[0] != "READY=1" {
		t.Errorf("got %q", got)
	}
}

func TestSystemdNotifyOff(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := NewNotifier(hclog.NewNullLogger())
	if n.Enabled() {
		t.Error("enabled without NOTIFY_SOCKET")
	}
	n.Ready("up") // no socket, no panic
	var nilN *Notifier
	nilN.Ready("up")
	nilN.Run(context.Background(), func() string { return "" }) // returns at once
}

// The watchdog is pinged only while the probe answers, every half
// WATCHDOG_USEC; STATUS= follows the probe's summary when it changes.
func TestSystemdWatchdog(t *testing.T) {
	c := listenNotify(t, filepath.Join(t.TempDir(), "notify"))
	t.Setenv("WATCHDOG_USEC", "200000") // pings every 100ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n := NewNotifier(hclog.NewNullLogger())
	if n.Watchdog() != 200*time.Millisecond {
		t.Fatalf("Watchdog() = %s", n.Watchdog())
	}
	var wedged atomic.Bool
	release := make(chan struct{})
	defer close(release)
	probe := func() string {
		if wedged.Load() {
			<-release
		}
		return "1 lane"
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx, probe); close(done) }()
	defer func() { cancel(); <-done }()

	if got := next(t, c, time.Second); got[0] != "WATCHDOG=1" {
		t.Fatalf("got %q, want WATCHDOG=1", got)
	}
	if got := next(t, c, time.Second); got[0] != "STATUS=1 lane" {
		t.Fatalf("got %q, want the status", got)
	}
	start := time.Now()
	if got := next(t, c, time.Second); got[0] != "WATCHDOG=1" {
		t.Fatalf("got %q, want WATCHDOG=1", got)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("pinged again after %s; want every 100ms", d)
	}
	wedged.Store(true)
	for {
		// At most one ping may already be on its way.
		_ = c.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
		if _, err := c.Read(make([]byte, 64)); err != nil {
			break
		}
	}
	none(t, c, 400*time.Millisecond)
}

// WATCHDOG_PID naming another process: the watchdog is not lanesd's.
func TestSystemdWatchdogOtherPID(t *testing.T) {
	listenNotify(t, filepath.Join(t.TempDir(), "notify"))
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", "1")
	if d := NewNotifier(hclog.NewNullLogger()).Watchdog(); d != 0 {
		t.Errorf("Watchdog() = %s for another pid's watchdog", d)
	}
}
