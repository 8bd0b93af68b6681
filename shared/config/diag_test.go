package config

import (
	"bytes"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func TestWriteDiagnostics(t *testing.T) {
	pos := &hcl.Range{Filename: "a.hcl", Start: hcl.Pos{Line: 3, Column: 7, Byte: 20}}
	diags := hcl.Diagnostics{
		{Severity: hcl.DiagError, Summary: "Invalid duration", Detail: `"x" is not a duration.`, Subject: pos},
		{Severity: hcl.DiagWarning, Summary: "Theme not cached", Detail: "Running\nunthemed.", Subject: pos},
		{Severity: hcl.DiagError, Summary: "No detail", Subject: pos},
		{Severity: hcl.DiagError, Summary: "Cannot read config file", Detail: "The file does not exist.", Subject: &hcl.Range{Filename: "b.hcl"}},
		{Severity: hcl.DiagError, Summary: "Nowhere", Detail: "No subject."},
	}
	var b bytes.Buffer
	WriteDiagnostics(&b, diags)
	want := `a.hcl:3,7: Invalid duration; "x" is not a duration.
a.hcl:3,7: warning: Theme not cached; Running unthemed.
a.hcl:3,7: No detail
b.hcl: Cannot read config file; The file does not exist.
Nowhere; No subject.
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// Every diagnostic Load makes, other than for an unreadable file, must carry
// a line, or "lanesd -check" output cannot be followed to the mistake.
func TestDiagnosticsHavePositions(t *testing.T) {
	for _, name := range []string{"many-errors", "theme-errors", "bad-pattern", "duplicate-lane", "no-app", "unknown-attribute"} {
		_, diags := Load("testdata/" + name + ".hcl")
		if !diags.HasErrors() {
			t.Errorf("%s: no errors", name)
		}
		for _, d := range diags {
			if d.Subject == nil || d.Subject.Start.Line == 0 || d.Subject.Filename == "" {
				t.Errorf("%s: %q has no position", name, d.Summary)
			}
		}
	}
}
