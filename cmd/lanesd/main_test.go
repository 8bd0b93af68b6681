package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

func TestVersionFlag(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"-version"}, &out, &errb); code != 0 {
		t.Fatalf("-version: exit %d, stderr %q", code, errb.String())
	}
	if !regexp.MustCompile(`^lanesd \S+ revision \S+.*; go1\.\S+ \S+/\S+\n$`).MatchString(out.String()) {
		t.Errorf("-version printed %q", out.String())
	}
}

// -h and -help are asked for: the usage, every flag, exit 0. An unknown
// flag is a usage error: exit 2.
func TestHelpFlag(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		var out, errb bytes.Buffer
		if code := run([]string{arg}, &out, &errb); code != 0 {
			t.Errorf("%s: exit %d, want 0", arg, code)
		}
		for _, want := range []string{"usage: lanesd", "-config file", "-check", "-version", "relative to the working directory", `(default "configs/example.hcl")`} {
			if !strings.Contains(errb.String(), want) {
				t.Errorf("%s: usage lacks %q:\n%s", arg, want, errb.String())
			}
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-bogus"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "flag provided but not defined: -bogus") {
		t.Errorf("-bogus: exit %d, want 2; stderr:\n%s", code, errb.String())
	}
}
