package integration

import (
	"encoding/json"
	"errors"

	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startLanesdShell is startLanesd with lanesd started through
// `bash -c "PREFIX exec lanesd -config FILE"`, for limits (ulimit) that
// must apply to lanesd from its first instruction.
func startLanesdShell(t *testing.T, prefix, hcl string) *lanesd {
	t.Helper()
	dir, tmp := t.TempDir(), newTmp(t)
	path := filepath.Join(dir, "lanes.hcl")
	if err := os.WriteFile(path, []byte(fullConfig(hcl)), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &lanesd{t: t, dir: dir, tmp: tmp, log: newLogBuffer(), done: make(chan struct{})}
	l.cmd = exec.Command("bash", "-c", prefix+` exec "$0" -config "$1"`, lanesdBin, path)
	l.cmd.Dir = dir
	l.cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	l.cmd.Stdout = l.log
	l.cmd.Stderr = l.log
	l.cmd.WaitDelay = 5 * time.Second
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l.pid = l.cmd.Process.Pid // bash execs lanesd: the same process
	go func() {
		l.err = l.cmd.Wait()
		close(l.done)
	}()
	t.Cleanup(l.cleanup)
	deadline := time.After(60 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(l.log.String()); m != nil {
			l.front, l.admin = m[1], m[2]
			break
		}
		select {
		case <-l.log.wrote:
		case <-l.done:
			t.Fatalf("lanesd exited before listening (%v); its log:\n%s", l.err, l.log)
		case <-deadline:
			t.Fatalf("lanesd did not log its listening line within 60s; its log:\n%s", l.log)
		}
	}
	l.client = newClient(30 * time.Second)
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
