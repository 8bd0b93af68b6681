package main

import (
	"os"
	"strings"
	"testing"
)

// Every scenario is registered once, in the one table, and lives in the
// file of its name.
func TestScenarioTable(t *testing.T) {
	seen := map[string]bool{}
	for _, sc := range scenarioTable {
		if len(sc.names) == 0 || sc.run == nil {
			t.Errorf("scenario %v: no name or no run", sc.names)
		}
		for _, n := range sc.names {
			if seen[n] {
				t.Errorf("scenario %q registered twice", n)
			}
			seen[n] = true
		}
		file := strings.Join(sc.names, "_") + ".go"
		if _, err := os.Stat(file); err != nil {
			t.Errorf("scenario %v: no file %s: %v", sc.names, file, err)
		}
	}
}

func TestParseOnly(t *testing.T) {
	all, err := parseOnly("")
	if err != nil || len(all) != len(scenarioNames()) {
		t.Fatalf(`parseOnly(""): %d of %d scenarios, %v`, len(all), len(scenarioNames()), err)
	}
	some, err := parseOnly("latency, soak")
	if err != nil || len(some) != 2 || !some["latency"] || !some["soak"] {
		t.Errorf(`parseOnly("latency, soak") = %v, %v`, some, err)
	}
	if _, err := parseOnly("soak,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf(`parseOnly("soak,nope"): %v, want an error naming "nope"`, err)
	}
}
