package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/supervisor/admin"
)

const token = "tok-123"

// backend is a fake admin.Backend with lanes "default" and "slow".
type backend struct {
	mu    sync.Mutex
	calls []string
}

func (b *backend) rec(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, fmt.Sprintf(format, args...))
}

func (b *backend) last() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.calls) == 0 {
		return ""
	}
	return b.calls[len(b.calls)-1]
}

func laneErr(lane string) error {
	if lane == "default" || lane == "slow" {
		return nil
	}
	return api.NotFound("no lane %q", lane)
}

func (b *backend) Status() api.Status {
	b.rec("status")
	return api.Status{PID: 77, UptimeS: 61, Listen: "127.0.0.1:8080", Lanes: []api.Lane{
		{Name: "default", MinWorkers: 2, MaxWorkers: 8, Served: 1234, Latency: api.Percentiles{P50: 1.5, P99: 12.25},
			Workers: []api.Worker{{PID: 1001, State: "ready", Served: 600}, {PID: 1002, State: "starting"}}},
		{Name: "slow", MinWorkers: 1, MaxWorkers: 3, CrashLoop: true, LastExit: "exit status 3"},
	}, Fetchd: api.Fetchd{Enabled: true, PID: 55, State: "ready"},
		Themes: []api.Theme{{Name: "main", State: "stale", Version: "abc"}}}
}

func (b *backend) Mappings() []api.Mapping {
	b.rec("mappings")
	hit := time.Now().Add(-90 * time.Second)
	return []api.Mapping{
		{Lane: "slow", Method: "GET", Pattern: "/report/*", Source: api.SourceAPI, Dynamic: true, Hits: 42, Added: time.Now().Add(-time.Hour), LastHit: &hit},
		{Lane: "default", Method: "*", Pattern: "/*", Source: api.SourceConfig, Added: time.Now()},
	}
}

func (b *backend) Map(r api.MapRequest) (api.Mapping, error) {
	b.rec("map %s %s %s", r.Lane, r.Method, r.Pattern)
	if err := laneErr(r.Lane); err != nil {
		return api.Mapping{}, err
	}
	if _, err := config.ParsePattern(r.Method + " " + r.Pattern); err != nil {
		return api.Mapping{}, api.BadRequest("%v", err) // as package mapping answers
	}
	return api.Mapping{Lane: r.Lane, Method: r.Method, Pattern: r.Pattern, Source: api.SourceAPI, Dynamic: true}, nil
}

func (b *backend) Unmap(r api.UnmapRequest) error {
	b.rec("unmap %s %s", r.Method, r.Pattern)
	if r.Pattern != "/report/*" {
		return api.NotFound("no mapping %s %s", r.Method, r.Pattern)
	}
	return nil
}

func (b *backend) Resize(lane string, r api.ResizeRequest) (api.ResizeResult, error) {
	res := api.ResizeResult{Lane: lane, MinWorkers: 2, MaxWorkers: 8}
	if r.MinWorkers != nil {
		res.MinWorkers = *r.MinWorkers
	}
	if r.MaxWorkers != nil {
		res.MaxWorkers = *r.MaxWorkers
	}
	b.rec("resize %s %d %d", lane, res.MinWorkers, res.MaxWorkers)
	return res, laneErr(lane)
}

func (b *backend) Drain(lane string) (api.DrainResult, error) {
	b.rec("drain %s", lane)
	return api.DrainResult{Lane: lane, Workers: 2, Started: true}, laneErr(lane)
}

func (b *backend) Reload() (api.ReloadResult, error) {
	b.rec("reload")
	return api.ReloadResult{}, &api.Error{Code: 422, Msg: "config has errors; the running one stays",
		Diagnostics: []string{"lanes.hcl:4,3: Unsupported argument; An argument named \"bogus\" is not expected here."}}
}

// serve starts an admin server with the fake backend and a token, and
// points lanectl at it through the environment.
func serve(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	srv := httptest.NewServer(admin.New(admin.Options{Token: token, Listen: "127.0.0.1:0", Backend: b, Log: hclog.NewNullLogger()}).Handler())
	t.Cleanup(srv.Close)
	t.Setenv("LANES_ADMIN", srv.URL)
	t.Setenv("LANES_TOKEN", token)
	return b
}

func lanectl(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCommands(t *testing.T) {
	tests := []struct {
		args []string
		call string
		want []string // lines or fragments of stdout
	}{
		{[]string{"status"}, "status", []string{"lanesd pid 77", "default", "1/2/8", "12.2", "crash loop (exit status 3)", "1001", "starting", "fetchd: ready", "main"}},
		{[]string{"mapped"}, "mappings", []string{"LANE", "LAST HIT", "/report/*", "api", "42", "1m30s ago", "never"}},
		{[]string{"map", "slow", "GET /export/*"}, "map slow GET /export/*", []string{"mapped GET /export/* to lane slow"}},
		{[]string{"map", "slow", "GET", "/x"}, "map slow GET /x", []string{"mapped GET /x to lane slow"}},
		{[]string{"unmap", "GET /report/*"}, "unmap GET /report/*", []string{"unmapped GET /report/*"}},
		{[]string{"resize", "slow", "3"}, "resize slow 3 8", []string{"lane slow: min_workers 3, max_workers 8"}},
		{[]string{"resize", "slow", "3", "6"}, "resize slow 3 6", []string{"lane slow: min_workers 3, max_workers 6"}},
		{[]string{"drain", "slow"}, "drain slow", []string{"lane slow: draining, 2 workers"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			b := serve(t)
			code, out, errs := lanectl(tt.args...)
			if code != 0 || errs != "" {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			if b.last() != tt.call {
				t.Errorf("backend call %q, want %q", b.last(), tt.call)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestJSON(t *testing.T) {
	serve(t)
	for _, args := range [][]string{{"-json", "status"}, {"status", "-json"}} {
		code, out, _ := lanectl(args...)
		var st api.Status
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.PID != 77 {
			t.Errorf("%q: exit %d, %q", args, code, out)
		}
	}
	code, out, _ := lanectl("-json", "mapped")
	var ms []api.Mapping
	if code != 0 || json.Unmarshal([]byte(out), &ms) != nil || len(ms) != 2 {
		t.Errorf("-json mapped: exit %d, %q", code, out)
	}
}

func TestServerErrors(t *testing.T) {
	serve(t)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"drain", "nosuch"}, []string{`no lane "nosuch"`, "404"}},
		{[]string{"resize", "nosuch", "1"}, []string{`no lane "nosuch"`}},
		{[]string{"map", "nosuch", "GET /x"}, []string{`no lane "nosuch"`}},
		// The method goes as typed, and is refused as the config refuses it.
		{[]string{"map", "slow", "get /x"}, []string{`methods are uppercase: write "GET /x"`, "400"}},
		{[]string{"unmap", "GET /never"}, []string{"no mapping GET /never"}},
		{[]string{"reload"}, []string{"config has errors", "\n  lanes.hcl:4,3: Unsupported argument"}},
	}
	for _, tt := range tests {
		code, out, errs := lanectl(tt.args...)
		if code != 1 || out != "" {
			t.Errorf("%q: exit %d stdout %q, want 1 and nothing", tt.args, code, out)
		}
		for _, w := range tt.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%q: stderr lacks %q: %q", tt.args, w, errs)
			}
		}
	}
}

func TestToken(t *testing.T) {
	b := serve(t)
	t.Setenv("LANES_TOKEN", "")
	code, _, errs := lanectl("status")
	if code != 1 || !strings.Contains(errs, "bearer token") || !strings.Contains(errs, "-token") {
		t.Errorf("no token: exit %d, %q", code, errs)
	}
	if code, _, errs := lanectl("-token", "wrong", "status"); code != 1 || !strings.Contains(errs, "401") {
		t.Errorf("wrong token: exit %d, %q", code, errs)
	}
	if code, _, errs := lanectl("-token", token, "status"); code != 0 {
		t.Errorf("-token: exit %d, %q", code, errs)
	}
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := lanectl("-token-file", file, "drain", "slow"); code != 0 || b.last() != "drain slow" {
		t.Errorf("-token-file: exit %d, %q", code, errs)
	}
	if code, _, errs := lanectl("-token-file", filepath.Join(t.TempDir(), "missing"), "status"); code != 1 || !strings.Contains(errs, "token file") {
		t.Errorf("missing token file: exit %d, %q", code, errs)
	}
}

func TestUsageErrors(t *testing.T) {
	b := serve(t)
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"status", "extra"},
		{"map"},
		{"map", "slow"},
		{"map", "slow", "/nomethod"},
		{"map", "slow", "GET /a /b"},
		{"unmap"},
		{"unmap", "GET"},
		{"resize", "slow"},
		{"resize", "slow", "x"},
		{"resize", "slow", "-1"},
		{"resize", "slow", "5", "2"},
		{"resize", "slow", "1", "2", "3"},
		{"drain"},
		{"drain", "a", "b"},
		{"reload", "now"},
		{"-nosuchflag", "status"},
		{"-token", "a", "-token-file", "f", "status"},
		{"-admin", "ftp://x", "status"},
	} {
		code, out, errs := lanectl(args...)
		if code != 2 || !strings.Contains(errs, "usage") && !strings.Contains(errs, "-admin") {
			t.Errorf("%q: exit %d, stderr %q; want 2 with usage", args, code, errs)
		}
		if out != "" {
			t.Errorf("%q: stdout %q", args, out)
		}
	}
	if len(b.calls) != 0 {
		t.Errorf("usage errors reached lanesd: %q", b.calls)
	}
}

func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	code, _, errs := lanectl("-admin", url, "status")
	if code != 1 || !strings.Contains(errs, "cannot reach the lanes admin API at "+url) {
		t.Errorf("exit %d, %q", code, errs)
	}
}

func TestAdminDefault(t *testing.T) {
	t.Setenv("LANES_ADMIN", "")
	code, _, errs := lanectl("-timeout", "1s", "status")
	// Whatever runs on the machine, lanectl must have looked at the default.
	if code != 0 && !strings.Contains(errs, defaultAdmin) {
		t.Errorf("exit %d, %q: want the default %s", code, errs, defaultAdmin)
	}
	if got, err := baseURL("127.0.0.1:9/"); err != nil || got != "http://127.0.0.1:9" {
		t.Errorf("baseURL without scheme = %q, %v", got, err)
	}
}

func (b *backend) Requests() []api.InflightRequest { return nil }

func (b *backend) Events(uint64) []api.Event { return nil }

func (b *backend) Samples(string, uint64) (api.Samples, error) { return api.Samples{}, nil }

func TestVersionFlag(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"-version"}, &out, &errb); code != 0 {
		t.Fatalf("-version: exit %d, stderr %q", code, errb.String())
	}
	if !regexp.MustCompile(`^lanectl \S+ revision \S+.*; go1\.\S+ \S+/\S+\n$`).MatchString(out.String()) {
		t.Errorf("-version printed %q", out.String())
	}
}
