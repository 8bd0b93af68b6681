package config

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics writes each diagnostic on one line:
//
//	FILE:LINE,COL: summary; detail
//	FILE:LINE,COL: warning: summary; detail
//
// The "; detail" part is left out when there is no detail, and a diagnostic
// that concerns a whole file (one that cannot be read) is written as
// "FILE: summary; detail". Newlines inside a detail become spaces so that
// every diagnostic stays one line for grep and editors.
func WriteDiagnostics(w io.Writer, diags hcl.Diagnostics) {
	for _, d := range diags {
		var b strings.Builder
		if r := d.Subject; r != nil {
			switch {
			case r.Start.Line > 0:
				fmt.Fprintf(&b, "%s:%d,%d: ", r.Filename, r.Start.Line, r.Start.Column)
			case r.Filename != "":
				fmt.Fprintf(&b, "%s: ", r.Filename)
			}
		}
		if d.Severity == hcl.DiagWarning {
			b.WriteString("warning: ")
		}
		b.WriteString(oneLine(d.Summary))
		if detail := oneLine(d.Detail); detail != "" {
			b.WriteString("; ")
			b.WriteString(detail)
		}
		b.WriteByte('\n')
		io.WriteString(w, b.String())
	}
}

// oneLine joins the lines of s with single spaces.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// at formats where r starts as "FILE:LINE,COL", for details that point at a
// second place (the first declaration of a duplicate).
func at(r hcl.Range) string {
	return fmt.Sprintf("%s:%d,%d", r.Filename, r.Start.Line, r.Start.Column)
}

// sortDiagnostics orders diags by position so that output is stable (HCL
// reports unknown attributes in map order) and reads top to bottom.
// Diagnostics without a position come first.
func sortDiagnostics(diags hcl.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		case a.Start.Line != b.Start.Line:
			return a.Start.Line < b.Start.Line
		default:
			return a.Start.Column < b.Start.Column
		}
	})
}
