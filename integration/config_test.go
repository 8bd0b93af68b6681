package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runLanesd runs lanesd with args to completion and returns its exit code,
// stdout and stderr.
func runLanesd(t *testing.T, tmp string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, lanesdBin, args...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("lanesd %v still running after 30s; stderr:\n%s", args, stderr.String())
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("lanesd %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

const badConfig = `listen = "127.0.0.1:0"
admin {
  listen = "127.0.0.1:0"
}
app {
  demo = true
}
colour = "blue"
lane "default" {
  min_workers     = 4
  max_workers     = 2
  request_timeout = "soon"
  map             = ["GET nopath"]
  flavour         = 1
}
`

// The lines of badConfig that each hold one error: the unknown attribute
// colour, min_workers > max_workers, the bad duration, the bad pattern and
// the unknown attribute flavour.
var badLines = []int{8, 10, 12, 13, 14}

var diagRE = regexp.MustCompile(`(?m)^(.*bad\.hcl):(\d+),(\d+): (.+)$`)

// diagLines returns the sorted line numbers of the FILE:LINE,COL
// diagnostics about path in out.
func diagLines(t *testing.T, out, path string) []int {
	t.Helper()
	var lines []int
	for _, m := range diagRE.FindAllStringSubmatch(out, -1) {
		if m[1] != path {
			t.Errorf("diagnostic names file %q, want %q: %s", m[1], path, m[0])
		}
		n, _ := strconv.Atoi(m[2])
		lines = append(lines, n)
	}
	sort.Ints(lines)
	return lines
}

// TestConfigErrors: a config with errors is reported as FILE:LINE,COL
// diagnostics, every one of them, and lanesd starts nothing.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(bad, []byte(badConfig), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("check", func(t *testing.T) {
		code, stdout, stderr := runLanesd(t, newTmp(t), "-config", bad, "-check")
		if code != 1 {
			t.Errorf("-check on a bad config: exit %d, want 1", code)
		}
		out := stdout + stderr
		got := diagLines(t, out, bad)
		for _, want := range badLines {
			if !contains(got, want) {
				t.Errorf("no diagnostic for line %d of bad.hcl", want)
			}
		}
		for _, want := range []string{"colour", "flavour", "soon", "nopath", "min_workers"} {
			if !strings.Contains(out, want) {
				t.Errorf("diagnostics do not mention %q", want)
			}
		}
		if strings.Contains(stdout, "OK") {
			t.Errorf("-check on a bad config printed OK")
		}
		if t.Failed() {
			t.Logf("output:\n%s", out)
		}
	})

	t.Run("run", func(t *testing.T) {
		_, _, checkErr := runLanesd(t, newTmp(t), "-config", bad, "-check")
		tmp := newTmp(t)
		start := time.Now()
		code, stdout, stderr := runLanesd(t, tmp, "-config", bad)
		out := stdout + stderr
		if code != 1 {
			t.Errorf("lanesd with a bad config: exit %d, want 1", code)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("lanesd with a bad config took %v to exit", d)
		}
		if got, want := diagLines(t, out, bad), diagLines(t, checkErr, bad); !slices.Equal(got, want) {
			t.Errorf("diagnostics at lines %v without -check, %v with it; want the same", got, want)
		}
		if strings.Contains(out, "listening") {
			t.Errorf("lanesd with a bad config started listening")
		}
		if ents, _ := os.ReadDir(tmp); len(ents) > 0 {
			t.Errorf("lanesd with a bad config left %d entries in its TMPDIR (it started something)", len(ents))
		}
		if t.Failed() {
			t.Logf("output:\n%s", out)
		}
	})

	t.Run("example config", func(t *testing.T) {
		example, err := filepath.Abs("../configs/example.hcl")
		if err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runLanesd(t, newTmp(t), "-config", example, "-check")
		if code != 0 || strings.TrimSpace(stdout) != "OK" {
			t.Errorf("-check on configs/example.hcl: exit %d, stdout %q, stderr %q; want 0 and OK", code, stdout, stderr)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(dir, "no-such.hcl")
		for _, args := range [][]string{{"-config", missing, "-check"}, {"-config", missing}} {
			code, stdout, stderr := runLanesd(t, newTmp(t), args...)
			if code != 1 {
				t.Errorf("%v: exit %d, want 1", args, code)
			}
			if !strings.Contains(stdout+stderr, missing) {
				t.Errorf("%v: the message does not name %s: %q", args, missing, stdout+stderr)
			}
		}
	})
}
