package integration

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
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

// frontStatus is the front block of /api/status.
type frontStatus struct {
	AcceptErrors uint64 `json:"accept_errors"`
	Truncated    uint64 `json:"truncated"`
	Retries      uint64 `json:"retries"`
}

// tryFront fetches the front block of /api/status.
func (l *lanesd) tryFront() (*frontStatus, error) {
	resp, err := l.client.Get("http://" + l.admin + "/api/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var doc struct {
		Front frontStatus `json:"front"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New("GET /api/status: " + resp.Status)
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	return &doc.Front, nil
}

func (l *lanesd) frontStatus(t *testing.T) frontStatus {
	t.Helper()
	fs, err := l.tryFront()
	if err != nil {
		t.Fatal(err)
	}
	return *fs
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
	for _, line := range strings.Split(l.log.String(), "\n") {
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
