package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/config"
)

// helloWorker is the path of internal/testworker, built once for the
// package's tests: a custom worker on worker.Serve whose /hello/* paths
// echo or misbehave on purpose, run as a lane command.
var helloWorker string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lanes-sup-test")
	if err != nil {
		panic(err)
	}
	helloWorker = filepath.Join(dir, "hello-worker")
	out, err := exec.Command("go", "build", "-o", helloWorker, "github.com/lanes-dev/lanes/internal/testworker").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build hello-worker: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// start runs a supervisor on ephemeral ports with the given lane blocks,
// every lane running hello-worker.
func start(t testing.TB, lanes string) *Supervisor {
	t.Helper()
	return startLogging(t, lanes, hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}))
}

// startLogging is start with the supervisor logging to log.
func startLogging(t testing.TB, lanes string, log hclog.Logger) *Supervisor {
	t.Helper()
	s, stop := startStoppable(t, lanes, log)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return s
}

// startStoppable is startLogging whose caller stops the supervisor: stop
// ends Run's context and returns what Run returned.
func startStoppable(t testing.TB, lanes string, log hclog.Logger) (*Supervisor, func() error) {
	t.Helper()
	return startAdmin(t, fmt.Sprintf("admin { listen = \"127.0.0.1:0\" }\nlog { level = %q }", log.GetLevel().String()), lanes, log)
}

// startAdmin is startStoppable with admin and log blocks of its own.
func startAdmin(t testing.TB, adminAndLog, lanes string, log hclog.Logger) (*Supervisor, func() error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lanes.hcl")
	src := fmt.Sprintf(`
listen = "127.0.0.1:0"
debug_headers = true
shutdown_timeout = "5s"
%s
app { demo = true }
%s`, adminAndLog, strings.ReplaceAll(lanes, "CMD", fmt.Sprintf("%q", helloWorker)))
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.Load(path)
	if diags.HasErrors() {
		t.Fatalf("config: %s", diags.Error())
	}
	s, err := New(cfg, Options{Log: log, Builtin: []string{helloWorker}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("supervisor not ready")
	}
	return s, func() error { cancel(); return <-done }
}

func get(t *testing.T, s *Supervisor, path string) (int, string, *fasthttp.ResponseHeader) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + s.FrontAddr().String() + path)
	if err := fasthttp.DoTimeout(req, resp, 20*time.Second); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	h := new(fasthttp.ResponseHeader)
	resp.Header.CopyTo(h)
	return resp.StatusCode(), string(resp.Body()), h
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
