package config

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// missingFile is a golden case with no input: Load of a path that does not
// exist. The path is relative so the golden file is the same on every machine.
const missingFile = "testdata/missing-file"

// TestGolden loads each testdata/NAME.hcl and compares what lanesd -check
// would print with testdata/NAME.golden: the diagnostics, one per line, or
// "OK" and a dump of the decoded config.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	cases := []string{missingFile}
	for _, in := range inputs {
		cases = append(cases, strings.TrimSuffix(in, ".hcl"))
	}
	for _, base := range cases {
		t.Run(filepath.Base(base), func(t *testing.T) {
			got := render(Load(base + ".hcl"))
			golden := base + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (go test -update rewrites it)\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}

	// A golden file whose input was removed would pass silently forever.
	goldens, _ := filepath.Glob("testdata/*.golden")
	for _, g := range goldens {
		base := strings.TrimSuffix(g, ".golden")
		if _, err := os.Stat(base + ".hcl"); err != nil && base != missingFile {
			t.Errorf("%s has no input %s.hcl", g, base)
		}
	}
}

func render(cfg *Config, diags hcl.Diagnostics) []byte {
	var b bytes.Buffer
	WriteDiagnostics(&b, diags)
	switch {
	case cfg != nil && diags.HasErrors():
		b.WriteString("BUG: config returned with errors\n")
	case cfg == nil && !diags.HasErrors():
		b.WriteString("BUG: no config and no errors\n")
	case cfg != nil:
		b.WriteString("OK\n")
		dump(&b, "", reflect.ValueOf(*cfg))
	}
	return b.Bytes()
}

// dump writes v as "path = value" lines, so a golden file shows every decoded
// value and default, and a change to any of them shows in the diff.
func dump(w io.Writer, path string, v reflect.Value) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			fmt.Fprintf(w, "%s = nil\n", path)
			return
		}
		v = v.Elem()
	}
	switch x := v.Interface().(type) {
	case hcl.Range:
		fmt.Fprintf(w, "%s = %s:%d,%d\n", path, x.Filename, x.Start.Line, x.Start.Column)
		return
	case string:
		fmt.Fprintf(w, "%s = %q\n", path, x)
		return
	case fmt.Stringer: // time.Duration, hclog.Level, Pattern
		fmt.Fprintf(w, "%s = %q\n", path, x.String())
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			name := v.Type().Field(i).Name
			if path != "" {
				name = path + "." + name
			}
			dump(w, name, v.Field(i))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			fmt.Fprintf(w, "%s = []\n", path)
		}
		for i := 0; i < v.Len(); i++ {
			dump(w, fmt.Sprintf("%s[%d]", path, i), v.Index(i))
		}
	default:
		fmt.Fprintf(w, "%s = %v\n", path, v.Interface())
	}
}
