package config

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad holds Load to its promise: whatever the file holds, it returns
// either a config or diagnostics, and never panics. The golden inputs seed
// the corpus, so plain `go test` runs every one of them through it too.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.hcl")
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("lane \"x\" {\n map = [\"GET /*\", \"* /a*b*c\"]\n}\napp { demo = true }\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		path := filepath.Join(t.TempDir(), "fuzz.hcl")
		if err := os.WriteFile(path, src, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, diags := Load(path)
		if (cfg == nil) != diags.HasErrors() {
			t.Fatalf("config %v with errors %v: want exactly one of them", cfg != nil, diags.HasErrors())
		}
		var out bytes.Buffer
		WriteDiagnostics(&out, diags)
		if diags.HasErrors() && out.Len() == 0 {
			t.Fatal("errors but nothing printed")
		}
		if cfg != nil && cfg.Lane(DefaultLaneName) == nil {
			t.Fatal("a valid config without the default lane")
		}
	})
}
