package lanestest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary, run again with LANESTEST_FAKE set, is a stand-in for
// lanesd: it reads its config, logs a listening line like lanesd's and
// serves /api/status on the admin address, as its mode says.
func TestMain(m *testing.M) {
	if mode := os.Getenv("LANESTEST_FAKE"); mode != "" {
		os.Exit(fakeLanesd(mode))
	}
	os.Exit(m.Run())
}

func fakeLanesd(mode string) int {
	conf, err := os.ReadFile(os.Args[len(os.Args)-1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake:", err)
		return 2
	}
	fmt.Fprintf(os.Stderr, "fake: config %d bytes, cwd has %s\n", len(conf), ConfigName)
	if mode == "exit" {
		fmt.Fprintln(os.Stderr, "fake: giving up before listening")
		return 3
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	front, _ := net.Listen("tcp", "127.0.0.1:0")
	admin, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(admin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mode == "token" && r.Header.Get("Authorization") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"pid":%d,"lanes":[{"name":"default"}]}`, os.Getpid())
	}))
	fmt.Fprintf(os.Stderr, "2026-01-01T00:00:00Z [INFO]  lanesd: listening: front=%s admin=%s\n", front.Addr(), admin.Addr())
	<-sigs
	if mode == "stubborn" {
		select {} // until SIGKILL
	}
	fmt.Fprintln(os.Stderr, "fake: stopping")
	return 0
}

func fakeOptions(t *testing.T, mode string) Options {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		Dir: t.TempDir(),
		Env: []string{"LANESTEST_FAKE=" + mode},
		Command: func(path string) *exec.Cmd {
			return exec.Command(exe, "-test.run=^$", path)
		},
		StartTimeout: 20 * time.Second,
	}
}

func TestStartAndStop(t *testing.T) {
	out := &Log{wrote: make(chan struct{}, 1)}
	o := fakeOptions(t, "ok")
	o.Output = out
	l, err := Start(o, Ephemeral("lane \"default\" {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Front == "" || l.Admin == "" || l.Front == l.Admin {
		t.Errorf("front %q admin %q", l.Front, l.Admin)
	}
	if got, _ := os.ReadFile(filepath.Join(o.Dir, ConfigName)); !strings.Contains(string(got), `listen = "127.0.0.1:0"`) {
		t.Errorf("config written: %q", got)
	}
	st, err := l.API.Status(context.Background())
	if err != nil || st.PID != l.PID || st.Lane("default") == nil {
		t.Fatalf("status: %+v %v (pid %d)", st, err, l.PID)
	}
	if forced := l.Stop(); forced {
		t.Error("a lanesd that exits on SIGTERM was SIGKILLed")
	}
	if l.Running() || l.ExitCode() != 0 {
		t.Errorf("after Stop: running %v, exit %d", l.Running(), l.ExitCode())
	}
	if !strings.Contains(l.Log.String(), "fake: stopping") || !strings.Contains(out.String(), "fake: stopping") {
		t.Errorf("log %q, output %q: want the last line in both", l.Log, out)
	}
	l.Stop() // twice: no effect
}

func TestStartFailureHasTheLog(t *testing.T) {
	_, err := Start(fakeOptions(t, "exit"), "")
	if err == nil || !strings.Contains(err.Error(), "exited before listening") || !strings.Contains(err.Error(), "fake: giving up before listening") {
		t.Fatalf("Start of a lanesd that exits: %v", err)
	}
}

func TestStopForcesAStubbornLanesd(t *testing.T) {
	o := fakeOptions(t, "stubborn")
	o.Proc = ProcOptions{Grace: 300 * time.Millisecond}
	l, err := Start(o, "")
	if err != nil {
		t.Fatal(err)
	}
	if forced := l.Stop(); !forced || !l.Forced() {
		t.Errorf("a lanesd that ignores SIGTERM: Stop forced %v", forced)
	}
	if _, err := l.Wait(time.Second); err != nil {
		t.Errorf("Wait after Stop: %v", err)
	}
}

func TestAdminAnsweringWithoutTokenIsReady(t *testing.T) {
	l, err := Start(fakeOptions(t, "token"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	if _, err := l.API.Status(context.Background()); err == nil {
		t.Error("status without the token answered")
	}
	l.API.Token = "x"
	if _, err := l.API.Status(context.Background()); err != nil {
		t.Errorf("status with a token: %v", err)
	}
}

func TestWaitTimesOut(t *testing.T) {
	l, err := Start(fakeOptions(t, "ok"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	if _, err := l.Wait(10 * time.Millisecond); err != ErrTimeout {
		t.Errorf("Wait on a running lanesd: %v, want ErrTimeout", err)
	}
}

func TestEphemeral(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"lane \"default\" {}\n", "listen = \"127.0.0.1:0\"\nadmin {\n  listen = \"127.0.0.1:0\"\n}\nlane \"default\" {}\n"},
		{"admin {\n  listen = \"127.0.0.1:0\"\n  token_file = \"t\"\n}\n", "listen = \"127.0.0.1:0\"\nadmin {\n  listen = \"127.0.0.1:0\"\n  token_file = \"t\"\n}\n"},
		{"listen = \"127.0.0.1:0\"\nadmin { listen = \"127.0.0.1:0\" }\n", "listen = \"127.0.0.1:0\"\nadmin { listen = \"127.0.0.1:0\" }\n"},
	} {
		if got := Ephemeral(tc.in); got != tc.want {
			t.Errorf("Ephemeral(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// With LogFile, lanesd's stderr goes to the file: the listening line is
// still found there, and CatchUp reads the rest into the Log.
func TestLogFile(t *testing.T) {
	o := fakeOptions(t, "ok")
	o.LogFile = filepath.Join(t.TempDir(), "lanesd.log")
	l, err := Start(o, "")
	if err != nil {
		t.Fatal(err)
	}
	if !ListeningRE.MatchString(l.Log.String()) {
		t.Errorf("log before CatchUp: %q, want the listening line", l.Log)
	}
	l.Stop()
	if strings.Contains(l.Log.String(), "fake: stopping") {
		t.Errorf("the log file was read after listening without CatchUp")
	}
	l.CatchUp()
	if !strings.Contains(l.Log.String(), "fake: stopping") {
		t.Errorf("log after CatchUp: %q", l.Log)
	}
	if b, _ := os.ReadFile(o.LogFile); !strings.Contains(string(b), "fake: stopping") {
		t.Errorf("log file: %q", b)
	}
}
