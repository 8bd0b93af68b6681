package mapping

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
)

// Lane indices of testConfig.
const (
	laneDefault = 0
	laneFast    = 1
	laneSlow    = 2
)

const (
	threshold   = time.Second
	forgetAfter = 10 * time.Minute
)

// clock is a settable clock for Config.Now.
type clock struct{ ns atomic.Int64 }

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newClock() *clock {
	c := &clock{}
	c.ns.Store(t0.UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func testConfig(clk *clock) Config {
	return Config{
		Lanes: []string{"default", "fast", "slow"},
		Static: map[string][]config.Pattern{
			"default": {{Method: "*", Path: "/*"}},
			"fast":    {{Method: "GET", Path: "/static/*"}, {Method: "GET", Path: "/*.png"}},
			"slow":    {{Method: "POST", Path: "/report"}},
		},
		AutoMap: &config.AutoMap{
			Threshold:   threshold,
			Lane:        "slow",
			From:        []string{"default"},
			ForgetAfter: forgetAfter,
			MaxEntries:  100,
		},
		Now: clk.Now,
	}
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: tWriter{t}, Level: hclog.Info})
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newSet(t testing.TB, c Config) *Set {
	t.Helper()
	s, err := New(c, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func match(s *Set, method, path string) (int, Ref) {
	return s.Match([]byte(method), []byte(path))
}

func wantLane(t *testing.T, s *Set, method, path string, want int, wantSource string) {
	t.Helper()
	lane, ref := match(s, method, path)
	if lane != want || ref.Source() != wantSource {
		t.Errorf("%s %s: lane %d (%s %q), want %d (%s)", method, path, lane, ref.Source(), ref.Pattern(), want, wantSource)
	}
}

// learn reports a slow request that ran in the default lane, as the
// supervisor would after Match sent it there.
func learn(s *Set, method, path string) {
	lane, ref := match(s, method, path)
	s.Observe(ref, laneName(s, lane), []byte(method), []byte(path), 2*threshold, false)
}

func TestPrecedence(t *testing.T) {
	s := newSet(t, testConfig(newClock()))

	wantLane(t, s, "GET", "/static/app.js", laneFast, api.SourceConfig)
	wantLane(t, s, "GET", "/page", laneDefault, api.SourceConfig)
	wantLane(t, s, "POST", "/report", laneSlow, api.SourceConfig)

	// A runtime mapping of the same pattern as a static one overrides it.
	if _, err := s.Add("slow", "GET", "/static/*"); err != nil {
		t.Fatal(err)
	}
	wantLane(t, s, "GET", "/static/app.js", laneSlow, api.SourceAPI)
	// A dynamic glob wins over a more specific static exact path.
	if _, err := s.Add("fast", "*", "/rep*"); err != nil {
		t.Fatal(err)
	}
	wantLane(t, s, "POST", "/report", laneFast, api.SourceAPI)

	// Removing a runtime mapping restores the static one.
	if err := s.Remove("GET", "/static/*"); err != nil {
		t.Fatal(err)
	}
	wantLane(t, s, "GET", "/static/app.js", laneFast, api.SourceConfig)
	if err := s.Remove("*", "/rep*"); err != nil {
		t.Fatal(err)
	}
	wantLane(t, s, "POST", "/report", laneSlow, api.SourceConfig)

	// Learned mappings are dynamic: one beats a static glob...
	learn(s, "GET", "/static/big.js") // ran in fast: not learned
	learn(s, "GET", "/slow-page")
	s.Flush() // it went live within minCompileGap anyway; Flush makes the test deterministic
	wantLane(t, s, "GET", "/slow-page", laneSlow, api.SourceAutoMap)
	wantLane(t, s, "GET", "/static/big.js", laneFast, api.SourceConfig)

	// ...and a runtime mapping of the same pattern replaces it.
	m, err := s.Add("fast", "GET", "/slow-page")
	if err != nil {
		t.Fatal(err)
	}
	if !m.Dynamic || m.Source != api.SourceAPI || m.Lane != "fast" {
		t.Errorf("Add answered %+v", m)
	}
	wantLane(t, s, "GET", "/slow-page", laneFast, api.SourceAPI)
	if _, _, _, entries := s.Counters(); entries != 0 {
		t.Errorf("%d learned entries after a runtime mapping replaced the only one", entries)
	}
	// Removing it leaves the static catch-all, not the learned mapping.
	if err := s.Remove("GET", "/slow-page"); err != nil {
		t.Fatal(err)
	}
	wantLane(t, s, "GET", "/slow-page", laneDefault, api.SourceConfig)
}

func TestNoMatchIsDefaultWithZeroRef(t *testing.T) {
	c := testConfig(newClock())
	c.Lanes = []string{"fast", "default"}
	c.Static = map[string][]config.Pattern{"fast": {{Method: "GET", Path: "/static/*"}}}
	c.AutoMap = nil
	s := newSet(t, c)
	lane, ref := match(s, "GET", "/elsewhere")
	if lane != 1 || !ref.IsZero() || ref.Pattern() != "" || ref.Source() != "" {
		t.Errorf("got lane %d ref %+v, want the default lane (1) and a zero Ref", lane, ref)
	}
	if s.AutoMapStatus() != nil {
		t.Error("AutoMapStatus is not nil with auto_map off")
	}
	s.Observe(ref, laneName(s, lane), []byte("GET"), []byte("/elsewhere"), time.Hour, true) // auto_map off: nothing
	if len(s.List()) != 1 {
		t.Errorf("List: %+v", s.List())
	}
}

func TestListSortedWithStats(t *testing.T) {
	clk := newClock()
	s := newSet(t, testConfig(clk))
	if _, err := s.Add("fast", "GET", "/a"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	match(s, "GET", "/static/x")
	match(s, "GET", "/static/y")
	learn(s, "GET", "/zzz")

	got := s.List()
	type row struct{ lane, method, pattern, source string }
	var rows []row
	for _, m := range got {
		rows = append(rows, row{m.Lane, m.Method, m.Pattern, m.Source})
	}
	want := []row{
		{"default", "*", "/*", "config"},
		{"fast", "GET", "/*.png", "config"},
		{"fast", "GET", "/a", "api"},
		{"fast", "GET", "/static/*", "config"},
		{"slow", "POST", "/report", "config"},
		{"slow", "GET", "/zzz", "auto_map"},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("List order:\n got %v\nwant %v", rows, want)
	}
	for _, m := range got {
		switch m.Pattern {
		case "/static/*":
			if m.Hits != 2 || m.LastHit == nil || !m.LastHit.Equal(clk.Now()) || !m.Added.Equal(t0) || m.Dynamic {
				t.Errorf("static mapping stats: %+v", m)
			}
		case "/a":
			if m.Hits != 0 || m.LastHit != nil || !m.Dynamic || !m.Added.Equal(t0) {
				t.Errorf("runtime mapping stats: %+v", m)
			}
		case "/zzz":
			if !m.Dynamic || !m.Added.Equal(clk.Now()) {
				t.Errorf("learned mapping: %+v", m)
			}
		}
	}
}

func TestStatsSurviveRecompiles(t *testing.T) {
	s := newSet(t, testConfig(newClock()))
	for range 3 {
		match(s, "GET", "/static/x")
	}
	if _, err := s.Add("slow", "GET", "/x"); err != nil {
		t.Fatal(err)
	}
	learn(s, "GET", "/y")
	if err := s.Remove("GET", "/x"); err != nil {
		t.Fatal(err)
	}
	match(s, "GET", "/static/x")
	if m := find(t, s.List(), "GET", "/static/*"); m.Hits != 4 {
		t.Errorf("hits %d after three recompiles, want 4", m.Hits)
	}
}

func find(t *testing.T, ms []api.Mapping, method, pattern string) api.Mapping {
	t.Helper()
	for _, m := range ms {
		if m.Method == method && m.Pattern == pattern {
			return m
		}
	}
	t.Fatalf("no mapping %s %s in %+v", method, pattern, ms)
	return api.Mapping{}
}

func TestAddAcceptsWholePattern(t *testing.T) {
	s := newSet(t, testConfig(newClock()))
	m, err := s.Add("slow", "", "PUT /upload/*")
	if err != nil {
		t.Fatal(err)
	}
	if m.Method != "PUT" || m.Pattern != "/upload/*" {
		t.Errorf("got %+v", m)
	}
	wantLane(t, s, "PUT", "/upload/big", laneSlow, api.SourceAPI)
}

// Every refused call answers an *api.Error with its status and changes
// nothing.
func TestErrorsChangeNothing(t *testing.T) {
	clk := newClock()
	s := newSet(t, testConfig(clk))
	if _, err := s.Add("fast", "GET", "/runtime"); err != nil {
		t.Fatal(err)
	}
	learn(s, "GET", "/learned")
	s.Flush()

	bad := testConfig(clk)
	tests := []struct {
		name    string
		call    func() error
		code    int
		message string
	}{
		{"add unknown lane", func() error { _, err := s.Add("nope", "GET", "/x"); return err },
			http.StatusNotFound, `no lane "nope": the lanes are default, fast, slow`},
		{"add lowercase method", func() error { _, err := s.Add("fast", "get", "/x"); return err },
			http.StatusBadRequest, `methods are uppercase: write "GET /x"`},
		{"add relative path", func() error { _, err := s.Add("fast", "GET", "x"); return err },
			http.StatusBadRequest, `the path must start with "/"`},
		{"add query", func() error { _, err := s.Add("fast", "GET", "/x?a=1"); return err },
			http.StatusBadRequest, `must not contain "?"`},
		{"add empty", func() error { _, err := s.Add("fast", "", ""); return err },
			http.StatusBadRequest, `is not a pattern`},
		{"add over a learned one to an unknown lane", func() error { _, err := s.Add("gone", "GET", "/learned"); return err },
			http.StatusNotFound, `no lane "gone"`},
		{"remove missing", func() error { return s.Remove("GET", "/nothing") },
			http.StatusNotFound, `no mapping GET /nothing`},
		{"remove static", func() error { return s.Remove("GET", "/static/*") },
			http.StatusConflict, `static mappings come from the config file; edit it and reload`},
		{"remove malformed", func() error { return s.Remove("GET", "static") },
			http.StatusBadRequest, `the path must start with "/"`},
		{"reload without default", func() error {
			c := bad
			c.Lanes = []string{"fast", "slow"}
			c.Static = nil
			_, err := s.Reconfigure(c, nil)
			return err
		}, http.StatusBadRequest, `no lane named "default"`},
		{"reload static of unknown lane", func() error {
			c := bad
			c.Static = map[string][]config.Pattern{"huge": {{Method: "GET", Path: "/h"}}}
			_, err := s.Reconfigure(c, nil)
			return err
		}, http.StatusNotFound, `no lane "huge"`},
		{"reload invalid pattern", func() error {
			c := bad
			c.Static = map[string][]config.Pattern{"fast": {{Method: "get", Path: "/h"}}}
			_, err := s.Reconfigure(c, nil)
			return err
		}, http.StatusBadRequest, `method must be "*" or uppercase letters`},
		{"reload duplicate static", func() error {
			c := bad
			c.Static = map[string][]config.Pattern{"fast": {{Method: "GET", Path: "/h"}}, "slow": {{Method: "GET", Path: "/h"}}}
			_, err := s.Reconfigure(c, nil)
			return err
		}, http.StatusBadRequest, `duplicate route`},
		{"reload auto_map to unknown lane", func() error {
			c := bad
			am := *c.AutoMap
			am.Lane = "slower"
			c.AutoMap = &am
			_, err := s.Reconfigure(c, nil)
			return err
		}, http.StatusNotFound, `no lane "slower"`},
		{"reload auto_map from unknown lane", func() error {
			c := bad
			am := *c.AutoMap
			am.From = []string{"default", "nowhere"}
			c.AutoMap = &am
			_, err := s.Reconfigure(c, nil)
			return err
		}, http.StatusNotFound, `no lane "nowhere"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, status := s.List(), s.AutoMapStatus()
			snap := s.cur.Load()
			err := tt.call()
			var ae *api.Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T), want an *api.Error", err, err)
			}
			if ae.Code != tt.code || !strings.Contains(ae.Msg, tt.message) {
				t.Errorf("got %d %q, want %d containing %q", ae.Code, ae.Msg, tt.code, tt.message)
			}
			if after := s.List(); !reflect.DeepEqual(before, after) {
				t.Errorf("List changed:\nbefore %+v\n after %+v", before, after)
			}
			if !reflect.DeepEqual(status, s.AutoMapStatus()) {
				t.Errorf("auto_map status changed")
			}
			if s.cur.Load() != snap {
				t.Errorf("the table was swapped")
			}
		})
	}
	wantLane(t, s, "GET", "/runtime", laneFast, api.SourceAPI)
	wantLane(t, s, "GET", "/learned", laneSlow, api.SourceAutoMap)
}

// laneName is the name of lane index i in s's latest table, or "" for an
// index out of range (a lane the table does not know).
func laneName(s *Set, i int) string {
	if l := s.Table().lanes; i >= 0 && i < len(l) {
		return l[i]
	}
	return ""
}
