package integration

import (
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// startLanesdShell is startLanesd with lanesd started through
// `bash -c "PREFIX exec lanesd -config FILE"`, for limits (ulimit) that
// must apply to lanesd from its first instruction.
func startLanesdShell(t *testing.T, prefix, hcl string) *lanesd {
	t.Helper()
	l, err := launchCmd(t, t.TempDir(), newTmp(t), hcl, func(path string) *exec.Cmd {
		return exec.Command("bash", "-c", prefix+` exec "$0" -config "$1"`, lanesdBin, path) // bash execs lanesd: the same pid
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// tryFront fetches the front block of /api/status.
func (l *lanesd) tryFront() (*api.Front, error) {
	st, err := l.tryStatus()
	if err != nil {
		return nil, err
	}
	return &st.Front, nil
}

// openIdle opens n TCP connections to addr that send nothing.
func openIdle(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d to %s: %v", i, addr, err)
		}
		conns = append(conns, c)
	}
	return conns
}

// accessLines returns the access-log lines of l's log that contain every
// one of parts.
func (l *lanesd) accessLines(parts ...string) []string {
	var out []string
	for _, line := range strings.Split(l.Log.String(), "\n") {
		if !strings.Contains(line, "access: request") {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}
