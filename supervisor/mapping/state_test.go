package mapping

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/api"
)

// stateConfig is testConfig saving to a state file in a fresh directory.
func stateConfig(t *testing.T, clk *clock) Config {
	c := testConfig(clk)
	c.StateFile = filepath.Join(t.TempDir(), "state", "mappings.json")
	return c
}

func dynamic(ms []api.Mapping) []api.Mapping {
	var out []api.Mapping
	for _, m := range ms {
		if m.Dynamic {
			out = append(out, m)
		}
	}
	return out
}

func readSaved(t *testing.T, path string) stateFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// A runtime and a learned mapping saved by one Set are there, routing and
// with their statistics, in the next Set on the same file.
func TestStateRoundTrip(t *testing.T) {
	clk := newClock()
	c := stateConfig(t, clk)
	s := newSet(t, c)
	if _, err := s.Add("fast", "GET", "/export/*"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add("slow", "*", "/big"); err != nil {
		t.Fatal(err)
	}
	learn(s, "GET", "/report/7")
	s.Flush()
	wantLane(t, s, "GET", "/report/7", laneSlow, api.SourceAutoMap)
	wantLane(t, s, "GET", "/report/7", laneSlow, api.SourceAutoMap) // two hits
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(c.StateFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, mode %v; want 0600", err, fi.Mode())
	}
	before := dynamic(s.List())

	clk.Advance(time.Minute) // well within forget_after
	s2 := newSet(t, c)
	after := dynamic(s2.List())
	if len(after) != 3 || len(after) != len(before) {
		t.Fatalf("after the restart %+v, want %+v", after, before)
	}
	for i := range before {
		b, a := before[i], after[i]
		if a.Lane != b.Lane || a.Method != b.Method || a.Pattern != b.Pattern || a.Source != b.Source ||
			a.Hits != b.Hits || !a.Added.Equal(b.Added) || (a.LastHit == nil) != (b.LastHit == nil) ||
			(a.LastHit != nil && !a.LastHit.Equal(*b.LastHit)) {
			t.Errorf("mapping %d after the restart %+v, want %+v", i, a, b)
		}
	}
	wantLane(t, s2, "GET", "/export/a.csv", laneFast, api.SourceAPI)
	wantLane(t, s2, "PUT", "/big", laneSlow, api.SourceAPI)
	wantLane(t, s2, "GET", "/report/7", laneSlow, api.SourceAutoMap)
	if _, _, _, n := s2.Counters(); n != 1 {
		t.Errorf("learned entries after the restart %d, want 1", n)
	}
}

// Changes are saved by Run, at most once per interval however many there
// are, and once more when Run ends.
func TestStateDebounced(t *testing.T) {
	c := stateConfig(t, newClock())
	s := newSet(t, c)
	s.store.every = 200 * time.Millisecond
	var writes int
	var mu sync.Mutex
	s.store.wrote = func() { mu.Lock(); writes++; mu.Unlock() }

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()

	// A flood of learned mappings, for about three intervals.
	start := time.Now()
	for i := 0; time.Since(start) < 600*time.Millisecond; i++ {
		learn(s, "GET", "/flood/"+itoa(i))
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	n := writes
	mu.Unlock()
	if n < 2 || n > 6 {
		t.Errorf("%d saves for a flood of 600ms at one per 200ms, want 2..6", n)
	}
	f := readSaved(t, c.StateFile)
	if _, _, _, held := s.Counters(); len(f.Learned) != held {
		t.Errorf("saved %d learned mappings after Run ended, want the %d held", len(f.Learned), held)
	}

	// Nothing changed: no write.
	was := n
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if mu.Lock(); writes != was {
		t.Errorf("Save without a change wrote the file")
	}
	mu.Unlock()
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

// On load, mappings of a lane the config no longer has are dropped with a
// log line each, and learned ones older than forget_after too.
func TestStateDropsOnLoad(t *testing.T) {
	clk := newClock()
	c := stateConfig(t, clk)
	c.Lanes = append(c.Lanes, "gone")
	s := newSet(t, c)
	for _, p := range []string{"/a", "/b"} {
		if _, err := s.Add("gone", "GET", p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Add("fast", "GET", "/kept"); err != nil {
		t.Fatal(err)
	}
	learn(s, "GET", "/old")
	clk.Advance(forgetAfter / 2)
	learn(s, "GET", "/young")
	s.Flush()
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}

	clk.Advance(forgetAfter/2 + time.Second) // /old is past forget_after
	c = testConfig(clk)                      // without lane "gone"
	c.StateFile = filepath.Join(filepath.Dir(readPath(s)), "mappings.json")
	var log strings.Builder
	s2, err := New(c, hclog.New(&hclog.LoggerOptions{Output: &log}))
	if err != nil {
		t.Fatal(err)
	}
	wantLane(t, s2, "GET", "/kept", laneFast, api.SourceAPI)
	wantLane(t, s2, "GET", "/young", laneSlow, api.SourceAutoMap)
	wantLane(t, s2, "GET", "/a", laneDefault, api.SourceConfig)
	wantLane(t, s2, "GET", "/old", laneDefault, api.SourceConfig)
	out := log.String()
	for _, want := range []string{
		"dropped saved runtime mapping GET /a (lane gone: gone)",
		"dropped saved runtime mapping GET /b (lane gone: gone)",
		"dropped saved learned mapping GET /old (forgotten",
		"dropped=3",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	// The file is rewritten without them at the next save.
	if err := s2.Save(); err != nil {
		t.Fatal(err)
	}
	if f := readSaved(t, c.StateFile); len(f.Runtime) != 1 || len(f.Learned) != 1 {
		t.Errorf("rewritten file holds %d runtime and %d learned, want 1 and 1", len(f.Runtime), len(f.Learned))
	}
}

func readPath(s *Set) string { return s.store.path }

// A corrupt state file is moved aside with a warning, and the Set starts
// with no runtime or learned mappings; it never fails New.
func TestStateCorruptMovedAside(t *testing.T) {
	for name, content := range map[string]string{
		"truncated":     `{"version":1,"runtime":[{"lane":"fast","meth`,
		"not json":      "\x00\x01garbage",
		"wrong version": `{"version":99}`,
		"bad time":      `{"version":1,"runtime":[{"lane":"fast","method":"GET","pattern":"/x","added":"yesterday"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			c := stateConfig(t, newClock())
			if err := os.MkdirAll(filepath.Dir(c.StateFile), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(c.StateFile, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			var log strings.Builder
			s, err := New(c, hclog.New(&hclog.LoggerOptions{Output: &log}))
			if err != nil {
				t.Fatalf("New refused to start on a corrupt state file: %v", err)
			}
			for _, m := range s.List() {
				if m.Dynamic {
					t.Errorf("dynamic mapping after a corrupt file: %+v", m)
				}
			}
			aside, _ := filepath.Glob(c.StateFile + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("want the file moved aside once, found %v", aside)
			}
			if got, _ := os.ReadFile(aside[0]); string(got) != content {
				t.Errorf("moved-aside file holds %q, want the corrupt content", got)
			}
			if !strings.Contains(log.String(), "[WARN]") || !strings.Contains(log.String(), "corrupt") {
				t.Errorf("no warning about the corrupt file:\n%s", log.String())
			}
			// And a good file is written in its place at the next save.
			if err := s.Save(); err != nil {
				t.Fatal(err)
			}
			if f := readSaved(t, c.StateFile); f.Version != stateVersion {
				t.Errorf("rewritten file version %d", f.Version)
			}
		})
	}
}

// Past MaxRuntime, Add answers 409 and changes nothing; replacing one held
// is still allowed, and so is adding once one is removed.
func TestRuntimeCap(t *testing.T) {
	c := testConfig(newClock())
	c.MaxRuntime = 3
	s := newSet(t, c)
	for _, p := range []string{"/a", "/b/*", "/c"} {
		if _, err := s.Add("fast", "GET", p); err != nil {
			t.Fatal(err)
		}
	}
	before := s.List()
	_, err := s.Add("fast", "GET", "/d")
	if api.Code(err) != http.StatusConflict || !strings.Contains(err.Error(), "3 runtime mappings") {
		t.Fatalf("Add past the cap: %v (code %d), want 409 naming the cap", err, api.Code(err))
	}
	if after := s.List(); len(after) != len(before) {
		t.Errorf("a refused Add changed the mappings: %d -> %d", len(before), len(after))
	}
	wantLane(t, s, "GET", "/d", laneDefault, api.SourceConfig)
	if _, err := s.Add("slow", "GET", "/a"); err != nil {
		t.Errorf("replacing a held runtime mapping at the cap: %v", err)
	}
	// A learned mapping does not count against it.
	learn(s, "GET", "/learned")
	if err := s.Remove("GET", "/c"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add("fast", "GET", "/d"); err != nil {
		t.Errorf("Add after a Remove at the cap: %v", err)
	}
}

// The API parses patterns as the config does: a lowercase method is a 400
// that says how to write it.
func TestAddPatternAsConfig(t *testing.T) {
	s := newSet(t, testConfig(newClock()))
	for _, c := range [][2]string{{"get", "/x"}, {"", "get /x"}, {"GET", "x"}, {"GET", "/x?y"}, {"GET", "/a /b"}} {
		_, err := s.Add("slow", c[0], c[1])
		if api.Code(err) != http.StatusBadRequest {
			t.Errorf("Add(%q, %q): %v, want 400", c[0], c[1], err)
		}
	}
	_, err := s.Add("slow", "get", "/x")
	if err == nil || !strings.Contains(err.Error(), `write "GET /x"`) {
		t.Errorf("lowercase method: %v, want the config's message", err)
	}
}

// Exact dynamic mappings live outside the router; their precedence is the
// router's: method before "*", exact before glob, dynamic before static.
func TestExactIndexPrecedence(t *testing.T) {
	s := newSet(t, testConfig(newClock()))
	mustAdd := func(lane, method, pattern string) {
		t.Helper()
		if _, err := s.Add(lane, method, pattern); err != nil {
			t.Fatal(err)
		}
	}
	mustAdd("fast", "*", "/x")
	mustAdd("slow", "GET", "/x")
	mustAdd("default", "GET", "/static/*")
	mustAdd("slow", "GET", "/static/logo.png")
	wantLane(t, s, "GET", "/x", laneSlow, api.SourceAPI)
	wantLane(t, s, "POST", "/x", laneFast, api.SourceAPI)
	wantLane(t, s, "GET", "/static/logo.png", laneSlow, api.SourceAPI)
	wantLane(t, s, "GET", "/static/app.js", laneDefault, api.SourceAPI)
	if err := s.Remove("GET", "/x"); err != nil {
		t.Fatal(err)
	}
	wantLane(t, s, "GET", "/x", laneFast, api.SourceAPI)
	// A table taken before a change does not see it.
	old := s.Table()
	mustAdd("slow", "GET", "/y")
	if lane, _ := old.Match([]byte("GET"), []byte("/y")); lane != laneDefault {
		t.Errorf("an older table sees a later add: lane %d", lane)
	}
	wantLane(t, s, "GET", "/y", laneSlow, api.SourceAPI)
	// A reload that reorders the lanes re-resolves the exact mappings.
	c := testConfig(newClock())
	c.Lanes = []string{"slow", "fast", "default"}
	if _, err := s.Reconfigure(c, nil); err != nil {
		t.Fatal(err)
	}
	if lane, _ := match(s, "GET", "/y"); s.Lanes()[lane] != "slow" {
		t.Errorf("after reordering lanes GET /y goes to %s, want slow", s.Lanes()[lane])
	}
}
