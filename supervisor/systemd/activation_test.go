package systemd

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// helperEnv makes the test binary run activationHelper instead of the
// tests: socket activation needs LISTEN_PID to be the process's own pid and
// the sockets at fds 3 and up, which only a fresh process has.
const helperEnv = "LANES_SYSTEMD_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		activationHelper()
		return
	}
	os.Exit(m.Run())
}

// activationHelper takes the listeners and prints what it got and what is
// left of LISTEN_* in its environment.
func activationHelper() {
	if os.Getenv("LISTEN_PID") == "self" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	l, err := TakeListeners()
	if err != nil {
		fmt.Println("error:", err)
	}
	addr := func(ln net.Listener) string {
		if ln == nil {
			return "-"
		}
		return ln.Addr().String()
	}
	fmt.Printf("front=%s admin=%s env=%q\n", addr(l.Front), addr(l.Admin),
		os.Getenv("LISTEN_PID")+os.Getenv("LISTEN_FDS")+os.Getenv("LISTEN_FDNAMES"))
	os.Exit(0)
}

// runActivated runs the helper with lns as fds 3, 4, … and env added.
func runActivated(t *testing.T, env []string, lns ...*net.TCPListener) string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), append(env, helperEnv+"=1")...)
	for _, ln := range lns {
		f, err := ln.File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func listenTCP(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestSystemdTakeListeners(t *testing.T) {
	front, admin := listenTCP(t), listenTCP(t)
	for _, tc := range []struct {
		name string
		env  []string
		lns  []*net.TCPListener
		want string
	}{
		{"by name", []string{"LISTEN_PID=self", "LISTEN_FDS=2", "LISTEN_FDNAMES=admin:front"}, []*net.TCPListener{admin, front},
			fmt.Sprintf("front=%s admin=%s env=%q", front.Addr(), admin.Addr(), "")},
		{"front only", []string{"LISTEN_PID=self", "LISTEN_FDS=1", "LISTEN_FDNAMES=front"}, []*net.TCPListener{front},
			fmt.Sprintf("front=%s admin=- env=%q", front.Addr(), "")},
		// Meant for another process (the shell that exec'd lanesd, say):
		// not taken, and still cleared so that no child sees it.
		{"another pid", []string{"LISTEN_PID=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=front"}, []*net.TCPListener{front},
			fmt.Sprintf("front=- admin=- env=%q", "")},
		{"unnamed", []string{"LISTEN_PID=self", "LISTEN_FDS=1"}, []*net.TCPListener{front},
			"error: systemd socket activation: socket \"LISTEN_FD_3\" (" + front.Addr().String() + `): lanesd takes sockets named "front" and "admin" (FileDescriptorName= in the .socket unit)` + "\n" +
				fmt.Sprintf("front=- admin=- env=%q", "")},
		{"twice", []string{"LISTEN_PID=self", "LISTEN_FDS=2", "LISTEN_FDNAMES=front:front"}, []*net.TCPListener{front, admin},
			"error: systemd socket activation: two sockets named \"front\" (" + front.Addr().String() + " and " + admin.Addr().String() + "); lanesd takes one\n" +
				fmt.Sprintf("front=- admin=- env=%q", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := runActivated(t, tc.env, tc.lns...); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
