package fetchd

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/lanes-dev/lanes/shared"
)

// fetchdChild starts this test binary as fetchd (TestMain runs Main when
// FETCHD_TEST_MAIN is set), serving set on sock, as lanesd starts it: the
// settings file beside sock, the environment of shared.FetchdEnv, a
// go-plugin client. The caller Kills it.
func fetchdChild(t *testing.T, set Settings, sock, level string, log hclog.Logger) *plugin.Client {
	t.Helper()
	wire := shared.FetchdSettings{Fetchd: set.Fetchd.Wire()}
	for _, th := range set.Themes {
		wire.Themes = append(wire.Themes, th.Wire())
	}
	file := filepath.Join(filepath.Dir(sock), "fetchd-settings.json")
	if err := shared.WriteFetchdSettings(file, wire); err != nil {
		t.Fatal(err)
	}
	env := shared.FetchdEnv{Socket: sock, Config: file, ParentPID: os.Getpid(), LogLevel: level}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env.Encode()...)
	cmd.Env = append(cmd.Env, "FETCHD_TEST_MAIN=1")
	return plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  shared.Handshake,
		Plugins:          shared.PluginMap(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     10 * time.Second,
		Logger:           log,
	})
}

// TestMainProcess runs Main as a real go-plugin child, the way lanesd
// does: handshake, Health, a theme lookup over the socket, Drain, Kill, and
// a cache that is closed cleanly afterwards.
func TestMainProcess(t *testing.T) {
	o := newTestOrigin(t)
	rundir, err := os.MkdirTemp("", "fd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(rundir)
	sock := filepath.Join(rundir, "fetchd.sock")
	dir := filepath.Join(t.TempDir(), "cache")
	set := settings(o.URL)
	set.Fetchd.CacheDir = dir
	client := fetchdChild(t, set, sock, "debug", testLog(t))
	defer client.Kill()
	rpc, err := client.Client()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rpc.Dispense(shared.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	ctl := raw.(shared.Control)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := ctl.Health(ctx)
	if err != nil || h.PID == 0 || h.PID == os.Getpid() {
		t.Fatalf("health: %+v %v", h, err)
	}

	cl, closeClient, err := shared.DialThemeService(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer closeClient()
	d, err := cl.Theme(ctx, "main", "")
	if err != nil || d.State != shared.ThemeFresh || string(d.HTML) != goodPage {
		t.Fatalf("lookup through the fetchd process: %+v %v", d, err)
	}
	st, err := cl.Status(ctx)
	if err != nil || st.PID != h.PID || st.CacheEntries != 1 {
		t.Errorf("status: %+v %v", st, err)
	}
	t.Logf("fetchd process RSS %.1f MB with one theme", float64(st.RSS)/(1<<20))

	if err := ctl.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	client.Kill()
	if !client.Exited() {
		t.Fatal("fetchd still running after Kill")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
	// Closed cleanly: the lock is free at once, and the copy is there.
	c, err := OpenCache(dir, CacheOptions{})
	if err != nil {
		t.Fatalf("reopen after fetchd exit: %v", err)
	}
	defer c.Close()
	if e, ok, _ := c.Load("main"); !ok || e.Version != d.Version {
		t.Errorf("cached copy after exit: %+v %v", e, ok)
	}
}
