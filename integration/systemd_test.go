package integration

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/internal/lanestest"
)

// notifySocket is a NOTIFY_SOCKET as systemd makes it: a unixgram socket
// whose datagrams the test reads in order.
type notifySocket struct {
	path string
	msgs chan []string // each datagram as its lines
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(newTmp(t), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n := &notifySocket{path: path, msgs: make(chan []string, 256)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- strings.Split(string(buf[:k]), "\n")
		}
	}()
	return n
}

// await reads datagrams until one begins with first (READY=1, …) and
// returns it; others are passed to skip, which may fail the test.
func (n *notifySocket) await(t *testing.T, first string, timeout time.Duration, skip func(msg []string)) []string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case msg, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed before %s", first)
			}
			if msg[0] == first {
				return msg
			}
			if skip != nil {
				skip(msg)
			}
		case <-deadline:
			t.Fatalf("no %s on NOTIFY_SOCKET within %s", first, timeout)
		}
	}
}

// field returns the value of KEY= in msg, or "".
func field(msg []string, key string) string {
	for _, l := range msg {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	return ""
}

var statusAddrRE = regexp.MustCompile(`^serving on (\S+) \(admin (\S+)\): (\d+) lanes, (\d+) workers`)

// lanesd under systemd (Type=notify, WatchdogSec=): READY=1 once it serves,
// STATUS= with where and what, WATCHDOG=1 while it is alive, RELOADING=1
// then READY=1 around a reload (a refused one too), STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	t.Parallel()
	n := newNotifySocket(t)
	l, err := launchCmd(t, t.TempDir(), newTmp(t), `
app {
  demo = true
}
lane "default" {
  min_workers = 2
}
`, func(path string) *exec.Cmd {
		// env(1) execs lanesd: its pid is lanesd's, as under systemd.
		cmd := exec.Command("env", "NOTIFY_SOCKET="+n.path, "WATCHDOG_USEC=1000000", lanesdBin, "-config", path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd
	})
	if err != nil {
		t.Fatal(err)
	}

	noEarly := func(msg []string) {
		if msg[0] == "READY=1" || msg[0] == "STOPPING=1" {
			t.Errorf("unexpected %q", msg)
		}
	}
	ready := n.await(t, "READY=1", 10*time.Second, noEarly)
	// READY=1 means serving: the listening line is logged, and the front
	// and admin named in STATUS= answer.
	if !lanestest.ListeningRE.MatchString(l.Log.String()) {
		t.Errorf("READY=1 before the listening line")
	}
	m := statusAddrRE.FindStringSubmatch(field(ready, "STATUS"))
	if m == nil || m[1] != l.Front || m[2] != l.Admin || m[3] != "1" || m[4] != "2" {
		t.Fatalf("READY=1 with STATUS %q; want the front %s, the admin %s, 1 lane, 2 workers", field(ready, "STATUS"), l.Front, l.Admin)
	}
	l.mustGet(t, "/", http.StatusOK)
	if field(ready, "MONOTONIC_USEC") == "" {
		t.Errorf("READY=1 without MONOTONIC_USEC: %q", ready)
	}

	// The watchdog (1s) is pinged every half second.
	n.await(t, "WATCHDOG=1", 3*time.Second, noEarly)
	start := time.Now()
	n.await(t, "WATCHDOG=1", 3*time.Second, noEarly)
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("watchdog pings %s apart, want about 500ms", d)
	}

	// A reload: RELOADING=1 (with MONOTONIC_USEC, as Type=notify-reload
	// wants), then READY=1 once done.
	l.signal(t, syscall.SIGHUP)
	reloading := n.await(t, "RELOADING=1", 10*time.Second, noEarly)
	if field(reloading, "MONOTONIC_USEC") == "" {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", reloading)
	}
	n.await(t, "READY=1", 30*time.Second, noEarly)
	l.waitLog(t, 5*time.Second, "reloaded")

	// A refused reload leaves the running config, and says so.
	l.writeConfig(t, "lane \"default\" {\n  min_workers = \"many\"\n}\n")
	l.signal(t, syscall.SIGHUP)
	n.await(t, "RELOADING=1", 10*time.Second, noEarly)
	again := n.await(t, "READY=1", 30*time.Second, noEarly)
	if st := field(again, "STATUS"); !strings.HasPrefix(st, "reload refused, running config unchanged; serving on ") {
		t.Errorf("READY=1 after a refused reload: STATUS %q", st)
	}

	l.signal(t, syscall.SIGTERM)
	stopping := n.await(t, "STOPPING=1", 10*time.Second, func(msg []string) {
		if msg[0] == "READY=1" || msg[0] == "RELOADING=1" {
			t.Errorf("unexpected %q", msg)
		}
	})
	if field(stopping, "STATUS") == "" {
		t.Errorf("STOPPING=1 without STATUS: %q", stopping)
	}
	if code := l.wait(t, 15*time.Second); code != 0 {
		t.Errorf("lanesd exited %d after SIGTERM", code)
	}
}

// activated starts lanesd on front and admin as systemd's socket
// activation passes them: fds 3 and 4, LISTEN_FDS=2,
// LISTEN_FDNAMES=front:admin and LISTEN_PID, which must be lanesd's own pid
// — so a shell sets it to its own and execs lanesd.
func activated(t *testing.T, front, admin *net.TCPListener) *lanesd {
	t.Helper()
	var files []*os.File
	for _, ln := range []*net.TCPListener{front, admin} {
		f, err := ln.File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close() // the child has its copy once started
		files = append(files, f)
	}
	l, err := launchCmd(t, t.TempDir(), newTmp(t), `
app {
  demo = true
}
lane "default" {
  min_workers = 2
}
`, func(path string) *exec.Cmd {
		cmd := exec.Command("/bin/sh", "-c",
			`export LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=front:admin; exec "$0" -config "$1"`, lanesdBin, path)
		cmd.ExtraFiles = files
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// lanesd serves on the sockets systemd passed, not on listen and
// admin.listen; keeps LISTEN_* from its workers; and as the sockets outlive
// it, a restart (or a new binary) refuses no connection: one made while no
// lanesd runs waits in the socket's backlog and is answered by the next.
func TestSystemdSocketActivation(t *testing.T) {
	t.Parallel()
	listen := func() *net.TCPListener {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	front, admin := listen(), listen()

	l := activated(t, front, admin)
	if l.Front != front.Addr().String() || l.Admin != admin.Addr().String() {
		t.Fatalf("listening on front %s, admin %s; want the passed sockets %s, %s", l.Front, l.Admin, front.Addr(), admin.Addr())
	}
	l.waitLog(t, time.Second, "listener from systemd socket activation: listener=front", "listener from systemd socket activation: listener=admin")
	l.mustGet(t, "/", http.StatusOK)
	if st := l.status(t); st.PID != l.PID {
		t.Errorf("admin status from pid %d, want lanesd %d", st.PID, l.PID)
	}
	for _, pid := range l.workerPIDs(t, "default") {
		env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		for kv := range strings.SplitSeq(string(env), "\x00") {
			if strings.HasPrefix(kv, "LISTEN_") {
				t.Errorf("worker %d inherited %s", pid, kv)
			}
		}
	}

	l.signal(t, syscall.SIGTERM)
	if code := l.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("lanesd exited %d after SIGTERM", code)
	}
	// No lanesd now; the socket is still open.
	waiting := make(chan result, 1)
	go func() {
		waiting <- do(newClient(60*time.Second), http.MethodGet, "http://"+front.Addr().String()+"/", nil, nil)
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case r := <-waiting:
		t.Fatalf("with no lanesd running, a request was answered: %s", r)
	default:
	}
	l2 := activated(t, front, admin)
	if r := <-waiting; r.err != nil || r.status != http.StatusOK {
		t.Errorf("request made between the two lanesd: %s, want 200 from the second", r)
	} else {
		t.Logf("a request made while no lanesd ran was answered by the next after %s", r.took.Round(time.Millisecond))
	}
	l2.mustGet(t, "/", http.StatusOK)
}

// -version on both binaries, and lanes_build_info on /metrics, say the same
// build.
func TestVersion(t *testing.T) {
	t.Parallel()
	line := regexp.MustCompile(`^(lanesd|lanectl) (\S+) revision ([^,;]+)(?:, [^;]*)?; (go1\S+) \S+/\S+\n$`)
	var version, revision, goversion string
	for _, bin := range []string{lanesdBin, lanectlBin} {
		out, err := exec.Command(bin, "-version").CombinedOutput()
		m := line.FindStringSubmatch(string(out))
		if err != nil || m == nil || m[1] != filepath.Base(bin) {
			t.Fatalf("%s -version: %v, %q", filepath.Base(bin), err, out)
		}
		version, revision, goversion = m[2], m[3], m[4]
		if strings.Contains(string(out), ", modified;") {
			revision += "-modified"
		}
	}
	l := startLanesd(t, "app {\n  demo = true\n}\n")
	m := l.metricsText(t)
	want := `lanes_build_info{goversion="` + goversion + `",revision="` + revision + `",version="` + version + `"} 1`
	if !strings.Contains(m, "\n"+want+"\n") {
		t.Errorf("/metrics: want the line %s in:\n%s", want, grepLines(m, "lanes_build_info"))
	}
}
