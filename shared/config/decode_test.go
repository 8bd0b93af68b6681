package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
)

// loadString writes src to a temporary config file and loads it.
func loadString(t *testing.T, src string) (*Config, hcl.Diagnostics) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lanes.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

func mustLoad(t *testing.T, path string) *Config {
	t.Helper()
	cfg, diags := Load(path)
	if len(diags) > 0 || cfg == nil {
		var b bytes.Buffer
		WriteDiagnostics(&b, diags)
		t.Fatalf("Load(%s): want no diagnostics, got:\n%s", path, b.String())
	}
	return cfg
}

// TestLoadFull checks the design example, typed: durations, sizes, levels and
// patterns decoded, defaults filled where the file is silent.
func TestLoadFull(t *testing.T) {
	cfg := mustLoad(t, "testdata/full.hcl")

	// Ranges are checked apart, then cleared for the comparison.
	for i, want := range map[int]int{0: 62, 1: 76, 2: 82} {
		if r := cfg.Lanes[i].Range; r.Filename != "testdata/full.hcl" || r.Start.Line != want {
			t.Errorf("Lanes[%d].Range = %v, want line %d", i, r, want)
		}
		cfg.Lanes[i].Range = hcl.Range{}
	}
	if r := cfg.Themes[0].Range; r.Start.Line != 37 {
		t.Errorf("Themes[0].Range = %v, want line 37", r)
	}
	cfg.Themes[0].Range = hcl.Range{}
	if r := cfg.Themes[0].URLRange; r.Start.Line != 38 {
		t.Errorf("Themes[0].URLRange = %v, want line 38", r)
	}
	cfg.Themes[0].URLRange = hcl.Range{}

	want := &Config{
		File:            "testdata/full.hcl",
		Listen:          "127.0.0.1:8080",
		DebugHeaders:    false,
		ShutdownTimeout: 30 * time.Second,
		StateDir:        "testdata/data/state", // beside fetchd's cache_dir, relative to the config file
		Front: Front{
			ReadTimeout:   15 * time.Second,
			WriteTimeout:  2 * time.Minute,
			IdleTimeout:   90 * time.Second,
			MaxHeaderSize: 16 << 10,
			MaxBodySize:   32 << 20,
			MaxConns:      1000,

			ClientBodyBuffer: 128 << 10,
			ResponseBuffer:   512 << 10,
			MaxTempFile:      2 << 30,
			RetryMethods:     MethodBit("GET") | MethodBit("HEAD") | MethodBit("PUT"),
		},
		Admin: Admin{Listen: "127.0.0.1:8081", MaxConns: DefaultAdminMaxConns},
		Log:   Log{Level: hclog.Info, JSON: false, AccessLog: true},
		App: App{
			Upstream:        "http://127.0.0.1:9000",
			UpstreamTimeout: 60 * time.Second,
			Theme:           "main",
		},
		Themes: []Theme{{
			Name: "main",
			URL:  "http://127.0.0.1:9001/theme.html",
			Rules: []ThemeRule{
				{Kind: "replace", Theme: "#content", Content: "#content"},
				{Kind: "title"},
				{Kind: "append", Theme: "head", Content: "head link, head style"},
				{Kind: "drop", Theme: ".placeholder"},
			},
		}},
		Fetchd: &Fetchd{
			CacheDir:     "testdata/data/fetchd", // relative to the config file
			Workers:      2,
			FetchTimeout: 10 * time.Second,
			MinRefresh:   5 * time.Second,
			StaleWait:    100 * time.Millisecond,
			MaxStale:     720 * time.Hour,
		},
		AutoMap: &AutoMap{
			Threshold:   3 * time.Second,
			Lane:        "slow",
			From:        []string{"default"},
			ForgetAfter: 10 * time.Minute,
			MaxEntries:  10000,
		},
		Lanes: []Lane{
			{
				Name: "default", MinWorkers: 2, MaxWorkers: 8, Concurrency: 1, MaxQueue: 100,
				QueueTimeout: 5 * time.Second, RequestTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second,
				Map: []Pattern{{"*", "/*"}},
			},
			{
				Name: "fast", MinWorkers: 4, MaxWorkers: 4, Concurrency: 1, MaxQueue: 100,
				QueueTimeout: 5 * time.Second, RequestTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second,
				Map: []Pattern{{"GET", "/*.png"}, {"GET", "/*.jpg"}, {"GET", "/static/*"}},
			},
			{
				Name: "slow", MinWorkers: 5, MaxWorkers: 15, Concurrency: 1, MaxQueue: 200,
				QueueTimeout: 5 * time.Second, RequestTimeout: 300 * time.Second, IdleTimeout: 60 * time.Second,
				MaxRSS: 256 << 20, Command: []string{"/bin/sh", "-c", "exec ./bin/my-worker -v"},
			},
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		var got, exp bytes.Buffer
		dump(&got, "", reflect.ValueOf(*cfg))
		dump(&exp, "", reflect.ValueOf(*want))
		t.Errorf("decoded config differs\n--- got\n%s--- want\n%s", got.String(), exp.String())
	}
	if l := cfg.Lane("slow"); l == nil || l.MaxWorkers != 15 {
		t.Errorf("Lane(slow) = %+v", l)
	}
	if l := cfg.Lane("nope"); l != nil {
		t.Errorf("Lane(nope) = %+v, want nil", l)
	}
}

// TestExampleConfig keeps configs/example.hcl (what "make run" starts) valid.
func TestExampleConfig(t *testing.T) {
	cfg := mustLoad(t, "../../configs/example.hcl")
	if cfg.Listen != "127.0.0.1:8080" || cfg.Admin.Listen != "127.0.0.1:8081" || !cfg.App.Demo {
		t.Errorf("listen %q, admin %q, demo %v: want the demo site on 8080, dashboard on 8081",
			cfg.Listen, cfg.Admin.Listen, cfg.App.Demo)
	}
	if cfg.Themes != nil || cfg.Fetchd != nil {
		t.Error("example uses a theme: that is configs/themed.hcl's job")
	}
	if cfg.AutoMap == nil || cfg.AutoMap.Lane != "slow" {
		t.Errorf("example's auto_map = %+v; want one that learns into lane slow", cfg.AutoMap)
	}
	var names []string
	for _, l := range cfg.Lanes {
		names = append(names, l.Name)
	}
	if got := strings.Join(names, " "); got != "default fast slow" {
		t.Errorf("lanes = %q, want \"default fast slow\"", got)
	}
	slow := cfg.Lane("slow")
	if slow == nil || slow.RequestTimeout != 60*time.Second || slow.MinWorkers != 2 {
		t.Errorf("slow lane = %+v", slow)
	}
}

func TestLaneWorkerDefaults(t *testing.T) {
	for _, tc := range []struct {
		body     string
		min, max int
	}{
		{"", DefaultMinWorkers, DefaultMinWorkers},
		{"min_workers = 3", 3, 3},
		{"max_workers = 8", DefaultMinWorkers, 8},
		{"max_workers = 1", 1, 1},
		{"min_workers = 0", 0, 1},
		{"min_workers = 0\nmax_workers = 4", 0, 4},
		{"min_workers = 4\nmax_workers = 4", 4, 4},
	} {
		cfg, diags := loadString(t, "app {\n demo = true\n}\nlane \"x\" {\n"+tc.body+"\n}\n")
		if diags.HasErrors() {
			t.Errorf("%q: %v", tc.body, diags)
			continue
		}
		if l := cfg.Lane("x"); l.MinWorkers != tc.min || l.MaxWorkers != tc.max {
			t.Errorf("%q: min %d max %d, want %d %d", tc.body, l.MinWorkers, l.MaxWorkers, tc.min, tc.max)
		}
	}
	// The default lane takes every unmapped request: it may not be empty.
	if _, diags := loadString(t, "app {\n demo = true\n}\nlane \"default\" {\nmin_workers = 0\n}\n"); !diags.HasErrors() {
		t.Error("default lane with min_workers = 0 was accepted")
	}
}

func TestAddressClash(t *testing.T) {
	for _, src := range []string{
		"admin {\n listen = \"127.0.0.1:8080\"\n}\n",      // clashes with the default listen
		"listen = \"127.0.0.1:8081\"\n",                   // clashes with the default admin listen
		"listen = \":9\"\nadmin {\n listen = \":9\"\n}\n", // both written
	} {
		_, diags := loadString(t, src+"app {\n demo = true\n}\n")
		if len(diags) != 1 || diags[0].Summary != "Address used twice" {
			t.Errorf("%q: got %v, want one \"Address used twice\"", src, diags)
		}
	}
}

func TestTokenFileRelativeToConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("\n abc \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "lanes.hcl")
	src := "admin {\n token_file = \"token\"\n}\napp {\n demo = true\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	// Load from elsewhere: the token file is found next to the config,
	// not in the working directory.
	cfg := mustLoad(t, path)
	if cfg.Admin.Token != "abc" || cfg.Admin.TokenFile != filepath.Join(dir, "token") {
		t.Errorf("Admin = %+v", cfg.Admin)
	}
}

func TestTokenFileMustBeSmallRegularFile(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tf := range []string{"/dev/zero", t.TempDir(), big} {
		_, diags := loadString(t, fmt.Sprintf("admin {\n token_file = %q\n}\napp {\n demo = true\n}\n", tf))
		if len(diags) != 1 || diags[0].Summary != "Cannot read token file" {
			t.Errorf("token_file %s: %v, want one \"Cannot read token file\"", tf, diags)
		}
	}
}
