package mapping

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
)

func TestReconfigureKeepsDynamicByLaneName(t *testing.T) {
	clk := newClock()
	s := newSet(t, testConfig(clk))
	for _, m := range []struct{ lane, method, pattern string }{
		{"slow", "GET", "/export/*"},
		{"fast", "GET", "/ping"},
		{"fast", "POST", "/hook"},
	} {
		if _, err := s.Add(m.lane, m.method, m.pattern); err != nil {
			t.Fatal(err)
		}
	}
	learn(s, "GET", "/heavy")
	s.Flush()
	match(s, "GET", "/export/a.csv")
	match(s, "GET", "/heavy")

	// The fast lane goes, the others swap places, a static mapping changes.
	c := testConfig(clk)
	c.Lanes = []string{"slow", "default"}
	c.Static = map[string][]config.Pattern{
		"default": {{Method: "*", Path: "/*"}},
		"slow":    {{Method: "POST", Path: "/report"}, {Method: "GET", Path: "/big/*"}},
	}
	changes, err := s.Reconfigure(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"map: static mappings replaced (4 -> 3)",
		"map: dropped runtime mapping GET /ping (lane gone: fast)",
		"map: dropped runtime mapping POST /hook (lane gone: fast)",
	}
	if !reflect.DeepEqual(changes, want) {
		t.Errorf("changes:\n got %q\nwant %q", changes, want)
	}

	const newSlow, newDefault = 0, 1
	wantLane(t, s, "GET", "/export/a.csv", newSlow, api.SourceAPI)
	wantLane(t, s, "GET", "/heavy", newSlow, api.SourceAutoMap)
	wantLane(t, s, "GET", "/big/x", newSlow, api.SourceConfig)
	wantLane(t, s, "GET", "/ping", newDefault, api.SourceConfig)
	wantLane(t, s, "GET", "/static/x", newDefault, api.SourceConfig)

	ms := s.List()
	if m := find(t, ms, "GET", "/export/*"); m.Hits != 2 || !m.Added.Equal(t0) {
		t.Errorf("runtime mapping lost its stats: %+v", m)
	}
	if m := find(t, ms, "POST", "/report"); m.Hits != 0 || !m.Added.Equal(t0) {
		t.Errorf("unchanged static mapping: %+v, want its first Added kept", m)
	}
	if m := find(t, ms, "GET", "/heavy"); m.Hits != 2 {
		t.Errorf("learned mapping lost its stats: %+v", m)
	}

	// Learning from-lane indices follow the names too: default is now 1.
	s.Observe(Ref{}, laneName(s, newDefault), []byte("GET"), []byte("/new"), 2*threshold, false)
	s.Observe(Ref{}, laneName(s, newSlow), []byte("GET"), []byte("/not"), 2*threshold, false)
	s.Flush()
	wantLane(t, s, "GET", "/new", newSlow, api.SourceAutoMap)
	wantLane(t, s, "GET", "/not", newDefault, api.SourceConfig)

	// Reloading the same config changes nothing.
	changes, err = s.Reconfigure(c, nil)
	if err != nil || len(changes) != 0 {
		t.Errorf("same config again: %q, %v", changes, err)
	}
}

func TestReconfigureAutoMap(t *testing.T) {
	clk := newClock()
	s := newSet(t, testConfig(clk))
	if _, err := s.Add("slow", "GET", "/op"); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		learn(s, "GET", fmt.Sprintf("/l/%02d", i))
		clk.Advance(time.Second)
	}
	s.Flush()
	// /l/00../l/04 hit last: the LRU ones are /l/05../l/14.
	for i := range 5 {
		match(s, "GET", fmt.Sprintf("/l/%02d", i))
	}

	c := testConfig(clk)
	c.AutoMap.MaxEntries = 20
	c.AutoMap.Threshold = 2 * time.Second
	changes, err := s.Reconfigure(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"map: auto_map max_entries is 20: evicted 10 least recently hit learned mappings",
		"map: auto_map threshold 1s -> 2s",
		"map: auto_map max_entries 100 -> 20",
	}
	if !reflect.DeepEqual(changes, want) {
		t.Errorf("changes:\n got %q\nwant %q", changes, want)
	}
	for i := range 30 {
		_, ref := match(s, "GET", fmt.Sprintf("/l/%02d", i))
		if gone := ref.Source() != api.SourceAutoMap; gone != (i >= 5 && i < 15) {
			t.Errorf("/l/%02d: evicted %v", i, gone)
		}
	}
	if got := counters(s); got != [4]uint64{30, 0, 10, 20} {
		t.Errorf("counters %v", got)
	}
	// The new threshold applies.
	s.Observe(Ref{}, laneName(s, laneDefault), []byte("GET"), []byte("/x"), 1500*time.Millisecond, false)
	if _, _, _, n := s.Counters(); n != 20 {
		t.Error("learned under the new threshold")
	}

	// auto_map off: every learned mapping goes, runtime ones stay.
	c.AutoMap = nil
	changes, err = s.Reconfigure(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 21 || changes[0] != "map: dropped learned mapping GET /l/00 (auto_map removed)" ||
		changes[20] != "map: auto_map off" {
		t.Errorf("changes: %q", changes)
	}
	if _, _, _, n := s.Counters(); n != 0 || s.AutoMapStatus() != nil {
		t.Errorf("%d learned mappings left with auto_map off", n)
	}
	wantLane(t, s, "GET", "/op", laneSlow, api.SourceAPI)
	s.Observe(Ref{}, laneName(s, laneDefault), []byte("GET"), []byte("/y"), time.Hour, true)
	if len(s.List()) != 5 {
		t.Errorf("List: %+v", s.List())
	}
}

func TestReconfigureAutoMapLaneChange(t *testing.T) {
	clk := newClock()
	c := testConfig(clk)
	c.Lanes = append(c.Lanes, "slower")
	s := newSet(t, c)
	learn(s, "GET", "/a")
	c.AutoMap = &config.AutoMap{Threshold: threshold, Lane: "slower", From: []string{"default"}, ForgetAfter: forgetAfter, MaxEntries: 100}
	changes, err := s.Reconfigure(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"map: dropped learned mapping GET /a (auto_map lane is now slower, not slow)",
		"map: auto_map lane slow -> slower",
	}
	if !reflect.DeepEqual(changes, want) {
		t.Errorf("changes:\n got %q\nwant %q", changes, want)
	}
	learn(s, "GET", "/a")
	s.Flush()
	wantLane(t, s, "GET", "/a", 3, api.SourceAutoMap)
}

func TestReconfigureSummarisesManyDrops(t *testing.T) {
	clk := newClock()
	s := newSet(t, testConfig(clk))
	for i := range 25 {
		if _, err := s.Add("fast", "GET", fmt.Sprintf("/f/%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c := testConfig(clk)
	c.Lanes = []string{"default", "slow"}
	delete(c.Static, "fast")
	changes, err := s.Reconfigure(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1+maxChangeLines+1 || changes[len(changes)-1] != "map: ... and 5 more dropped like these" {
		t.Errorf("changes: %q", changes)
	}
	if !slices.ContainsFunc(changes, func(l string) bool { return strings.HasPrefix(l, "map: static mappings replaced") }) {
		t.Errorf("changes: %q", changes)
	}
}
