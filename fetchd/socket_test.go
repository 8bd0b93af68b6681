package fetchd

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"google.golang.org/grpc"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
)

// TestThemeServiceOverSocket runs the gRPC glue over a real unix socket:
// a worker's lookup, the "have" short-circuit, Status, an unknown theme, and
// a fetchd that goes away.
func TestThemeServiceOverSocket(t *testing.T) {
	o := newTestOrigin(t)
	s := start(t, t.TempDir(), settings(o.URL))
	rundir, err := os.MkdirTemp("", "fd") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(rundir)
	sock := filepath.Join(rundir, "fetchd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	shared.RegisterThemeService(gs, s)
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()

	cl, closeClient, err := shared.DialThemeService(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer closeClient()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	d, err := cl.Theme(ctx, "main", "")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != shared.ThemeFresh || string(d.HTML) != goodPage || d.Version == "" || d.Name != "main" || d.Fetched.IsZero() {
		t.Fatalf("first lookup: %+v", d)
	}
	d2, err := cl.Theme(ctx, "main", d.Version)
	if err != nil {
		t.Fatal(err)
	}
	if d2.HTML != nil || d2.Version != d.Version || d2.State != shared.ThemeFresh {
		t.Errorf("lookup with the current version: %d bytes, version %q, state %q; want no HTML", len(d2.HTML), d2.Version, d2.State)
	}
	if _, err := cl.Theme(ctx, "other", ""); !errors.Is(err, shared.ErrUnknownTheme) {
		t.Errorf("unknown theme: %v", err)
	}
	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != os.Getpid() || st.CacheEntries != 1 || st.CacheBytes != int64(len(goodPage)) || len(st.Themes) != 1 ||
		st.Themes[0].Fetches != 1 || st.Themes[0].State != shared.ThemeFresh || st.Themes[0].LastFetch == nil {
		t.Errorf("status: %+v", st)
	}

	gs.Stop()
	if _, err := cl.Theme(ctx, "main", d.Version); !errors.Is(err, shared.ErrFetchdGone) {
		t.Errorf("fetchd stopped: %v, want ErrFetchdGone", err)
	}
}

func TestCheck(t *testing.T) {
	o := newTestOrigin(t)
	urlRange := hcl.Range{Filename: "lanes.hcl", Start: hcl.Pos{Line: 7, Column: 9}, End: hcl.Pos{Line: 7, Column: 30}}
	cfg := func(url, dir string) *config.Config {
		set := settings(url)
		set.Fetchd.CacheDir = dir
		set.Fetchd.FetchTimeout = time.Second
		set.Themes[0].URLRange = urlRange
		return &config.Config{App: config.App{Theme: "main"}, Fetchd: &set.Fetchd, Themes: set.Themes}
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "cache")

	if diags := Check(ctx, cfg(o.URL, dir)); diags.HasErrors() {
		t.Errorf("fetchable theme: %v", diags)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("Check created cache_dir")
	}

	o.Close()
	diags := Check(ctx, cfg(o.URL, dir))
	if len(diags) != 1 || diags[0].Subject == nil || *diags[0].Subject != urlRange || !strings.Contains(diags[0].Detail, `Theme "main" can neither be fetched`) {
		t.Fatalf("unfetchable, uncached theme: %v", diags)
	}

	// A copy in the cache is enough.
	s := start(t, dir, settings(o.URL))
	if _, _, _, err := s.cache.HTML("main"); err != nil {
		t.Fatal(err)
	}
	_ = s.cache.Put("main", Entry{URL: o.URL, Version: "v", Fetched: time.Now(), Size: 4}, []byte("<p/>"))
	// Held by this process (as lanesd's own fetchd would be): not "in use",
	// but unreadable, so the origin decides.
	if diags := Check(ctx, cfg(o.URL, dir)); len(diags) != 1 {
		t.Errorf("cache held by our own fetchd, origin down: %v", diags)
	}
	stop(t, s)
	if diags := Check(ctx, cfg(o.URL, dir)); diags.HasErrors() {
		t.Errorf("cached theme, origin down: %v", diags)
	}
}
