package shared

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// getenv reads env as os.Getenv reads the process's environment: the last
// entry of a name wins.
func getenv(env []string) func(string) string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

func TestWorkerEnvRoundTrip(t *testing.T) {
	full := WorkerEnv{
		Lane:          "slow",
		Socket:        "/run/lanes/w-slow-1.sock",
		ParentPID:     4242,
		LogLevel:      "debug",
		MaxHeaderSize: 8 << 10,
		MaxBodySize:   16 << 20,
		DebugHeaders:  true,
		App:           &AppWire{Upstream: "http://127.0.0.1:9000", UpstreamTimeout: 3 * time.Second, Theme: "main", UnderscoresInHeaders: true},
		Theme: &WorkerTheme{
			Theme: ThemeWire{Name: "main", URL: "http://theme.example/", Rules: []ThemeRuleWire{
				{Kind: "replace", Theme: "#content", Content: "body"},
				{Kind: "title", Theme: "title", Content: "h1"},
			}},
			StaleWait: 100 * time.Millisecond,
		},
		FetchdSocket: "/run/lanes/fetchd-themes.sock",
	}
	for _, e := range []WorkerEnv{full, {}, {Lane: "default", ParentPID: 1}, {App: &AppWire{Demo: true}}} {
		got, err := DecodeWorkerEnv(getenv(e.Encode()))
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Errorf("Decode(Encode(%+v)) = %+v, %v", e, got, err)
		}
	}
	if env := (WorkerEnv{}).Encode(); len(env) != 0 {
		t.Errorf("zero WorkerEnv encodes as %q, want nothing", env)
	}

	// The names are the external contract: a change here breaks programs
	// that read them.
	want := map[string]string{
		"LANES_LANE": "slow", "LANES_SOCKET": full.Socket, "LANES_PARENT_PID": "4242",
		"LANES_LOG_LEVEL": "debug", "LANES_MAX_HEADER_SIZE": "8192", "LANES_MAX_BODY_SIZE": "16777216",
		"LANES_DEBUG_HEADERS": "1", "LANES_FETCHD_SOCKET": full.FetchdSocket,
	}
	got := getenv(full.Encode())
	for k, v := range want {
		if got(k) != v {
			t.Errorf("%s = %q, want %q", k, got(k), v)
		}
	}
	for _, k := range []string{"LANES_APP", "LANES_THEME"} {
		if !strings.HasPrefix(got(k), "{") {
			t.Errorf("%s = %q, want JSON", k, got(k))
		}
	}
}

// Parts encoded alone and joined, as the supervisor, the lane and the
// process each add theirs, decode as the whole.
func TestWorkerEnvParts(t *testing.T) {
	env := append(WorkerEnv{LogLevel: "warn", MaxBodySize: 10}.Encode(), WorkerEnv{Lane: "fast", ParentPID: 7}.Encode()...)
	env = append(env, WorkerEnv{Socket: "/s"}.Encode()...)
	got, err := DecodeWorkerEnv(getenv(env))
	want := WorkerEnv{Lane: "fast", Socket: "/s", ParentPID: 7, LogLevel: "warn", MaxBodySize: 10}
	if err != nil || got != want {
		t.Errorf("parts decode as %+v, %v; want %+v", got, err, want)
	}
}

func TestFetchdEnvRoundTrip(t *testing.T) {
	for _, e := range []FetchdEnv{
		{Socket: "/run/lanes/fetchd-themes.sock", Config: "/run/lanes/fetchd-settings.json", ParentPID: 99, LogLevel: "trace"},
		{},
	} {
		got, err := DecodeFetchdEnv(getenv(e.Encode()))
		if err != nil || got != e {
			t.Errorf("Decode(Encode(%+v)) = %+v, %v", e, got, err)
		}
	}
	got := getenv(FetchdEnv{Socket: "/a", Config: "/b"}.Encode())
	if got("LANES_FETCHD_SOCKET") != "/a" || got("LANES_FETCHD_CONFIG") != "/b" {
		t.Errorf("fetchd names: %q %q", got("LANES_FETCHD_SOCKET"), got("LANES_FETCHD_CONFIG"))
	}
}

func TestFetchdSettingsFile(t *testing.T) {
	set := FetchdSettings{
		Fetchd: FetchdWire{CacheDir: "/var/cache/lanes", Workers: 2, FetchTimeout: 10 * time.Second,
			MinRefresh: 5 * time.Second, StaleWait: 100 * time.Millisecond, MaxStale: 720 * time.Hour},
		Themes: []ThemeWire{{Name: "main", URL: "http://theme.example/", Rules: []ThemeRuleWire{{Kind: "drop", Content: ".ad"}}}},
	}
	file := t.TempDir() + "/settings.json"
	if err := WriteFetchdSettings(file, set); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFetchdSettings(file)
	if err != nil || !reflect.DeepEqual(got, set) {
		t.Errorf("read back %+v, %v; want %+v", got, err, set)
	}
	if _, err := ReadFetchdSettings(t.TempDir() + "/none"); err == nil || !strings.Contains(err.Error(), EnvFetchdConfig) {
		t.Errorf("missing settings file: %v, want an error naming %s", err, EnvFetchdConfig)
	}
}

// A malformed value is an error that names its variable, so that a worker
// started wrongly says what is wrong rather than running on a default.
func TestDecodeMalformed(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"LANES_PARENT_PID", "abc"},
		{"LANES_PARENT_PID", "-3"},
		{"LANES_LOG_LEVEL", "loud"},
		{"LANES_MAX_HEADER_SIZE", "8k"},
		{"LANES_MAX_BODY_SIZE", "1.5"},
		{"LANES_DEBUG_HEADERS", "yes"},
		{"LANES_APP", `{"upstream": 1}`},
		{"LANES_APP", "null"},
		{"LANES_THEME", "{"},
	} {
		env := []string{"LANES_LANE=slow", tc.name + "=" + tc.value}
		_, err := DecodeWorkerEnv(getenv(env))
		if err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("worker %s=%s: %v, want an error naming %s", tc.name, tc.value, err, tc.name)
		}
		if tc.name == "LANES_PARENT_PID" || tc.name == "LANES_LOG_LEVEL" {
			_, err := DecodeFetchdEnv(getenv(env))
			if err == nil || !strings.Contains(err.Error(), tc.name) {
				t.Errorf("fetchd %s=%s: %v, want an error naming %s", tc.name, tc.value, err, tc.name)
			}
		}
	}
	// Every malformed variable is reported, not only the first.
	_, err := DecodeWorkerEnv(getenv([]string{"LANES_PARENT_PID=x", "LANES_MAX_BODY_SIZE=y"}))
	if err == nil || !strings.Contains(err.Error(), "LANES_PARENT_PID") || !strings.Contains(err.Error(), "LANES_MAX_BODY_SIZE") {
		t.Errorf("two malformed variables: %v", err)
	}
}
