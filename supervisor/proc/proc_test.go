//go:build linux

package proc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

var helloWorker string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lanes-proc-test")
	if err != nil {
		panic(err)
	}
	helloWorker = filepath.Join(dir, "hello-worker")
	if out, err := exec.Command("go", "build", "-o", helloWorker, "github.com/lanes-dev/lanes/internal/testworker").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build hello-worker: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var spawner = NewSpawner()

func spec(t *testing.T, argv ...string) Spec {
	return Spec{Command: argv, Env: []string{"GOTRACEBACK=all"}, RunDir: t.TempDir(), Name: "w", Log: hclog.NewNullLogger(), Spawner: spawner}
}

// The two-phase kill of a Go worker collects its goroutine stacks (SIGQUIT)
// before the SIGKILL, and the process is reaped.
func TestQuitCollectsStacks(t *testing.T) {
	p := New(spec(t, helloWorker))
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.PID() == 0 {
		t.Fatal("no pid after Start")
	}
	if _, err := p.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := p.Quit(2*time.Second, 64<<10)
	if !strings.Contains(out, "goroutine ") {
		t.Errorf("Quit collected no goroutine stacks:\n%.500s", out)
	}
	select {
	case <-p.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("process not reaped after Quit")
	}
	// Signals after the reap go nowhere, never to a reused pid.
	if err := p.Signal(syscall.SIGKILL); err == nil {
		t.Error("Signal after the reap reported success")
	}
}

// Kill of a process still in its handshake ends it at once: Start fails and
// nothing is left running.
func TestKillWhileStarting(t *testing.T) {
	p := New(spec(t, "/bin/sh", "-c", `sleep 2; exec "$0"`, helloWorker))
	errc := make(chan error, 1)
	go func() { errc <- p.Start(context.Background()) }()
	deadline := time.Now().Add(5 * time.Second)
	for p.PID() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	pid := p.PID()
	if pid == 0 {
		t.Fatal("never forked")
	}
	began := time.Now()
	p.Kill()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Start succeeded after Kill")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start still running 5 s after Kill")
	}
	<-p.Exited()
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("a killed starting process took %v to end", d)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("process %d still exists", pid)
	}
}

// A command that does not exist fails Start with the fork's error and
// closes Exited.
func TestStartMissingCommand(t *testing.T) {
	p := New(spec(t, "/nonexistent/worker"))
	if err := p.Start(context.Background()); err == nil {
		t.Fatal("Start of a missing command succeeded")
	}
	select {
	case <-p.Exited():
	case <-time.After(2 * time.Second):
		t.Fatal("Exited not closed after a failed fork")
	}
}

// A process that dies on its own (a crash, the OOM killer, an operator's
// kill -9) leaves nothing behind in lanesd: no gRPC connection redialling
// it (two goroutines for ever), no go-plugin socket directory, no data
// socket. Before, each crash leaked all three.
func TestCrashedProcessIsReleased(t *testing.T) {
	before := runtime.NumGoroutine()
	s := spec(t, helloWorker)
	p := New(s)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(p.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("not reaped")
	}
	var left []string
	n := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ents, _ := os.ReadDir(s.RunDir)
		left = left[:0]
		for _, e := range ents {
			left = append(left, e.Name())
		}
		if n = runtime.NumGoroutine(); len(left) == 0 && n <= before {
			return
		}
	}
	t.Errorf("after the process died: run directory holds %v; %d goroutines, %d before it started", left, n, before)
}

// A Go worker that prints to stdout before its handshake (a banner, a
// debug print) still starts and serves; before, go-plugin refused it and
// every start failed.
func TestBannerBeforeHandshake(t *testing.T) {
	s := spec(t, helloWorker)
	s.Env = append(s.Env, "TESTWORKER_BANNER=my app v2 starting")
	p := New(s)
	if err := p.Start(context.Background()); err != nil {
		t.Fatalf("a worker with a banner on stdout failed to start: %v", err)
	}
	defer p.Kill()
	if _, err := p.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
}
