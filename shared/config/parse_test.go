package config

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"1048576", 1 << 20},
		{"512B", 512},
		{"512b", 512},
		{"8KB", 8 << 10},
		{"8kb", 8 << 10},
		{"8 KiB", 8 << 10},
		{"256MB", 256 << 20},
		{"256mib", 256 << 20},
		{"1GB", 1 << 30},
		{"1GiB", 1 << 30},
		{"2TB", 2 << 40},
		{" 16 MB ", 16 << 20},
		{"8388607TiB", 8388607 << 40},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, wantErr string }{
		{"", "is not a size"},
		{"MB", "is not a size"},
		{"-1MB", "is not a size"},
		{"1.5GB", "is not a size"},
		{"12XB", "is not a size"},
		{"1 M", "is not a size"},
		{"1 K B", "is not a size"},
		{"8388608TiB", "too large"},
		{"99999999999999999999", "too large"},
	} {
		got, err := ParseSize(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseSize(%q) = %d, %v; want error containing %q", tc.in, got, err, tc.wantErr)
		}
	}
}

func TestParsePattern(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Pattern
	}{
		{"GET /", Pattern{"GET", "/"}},
		{"* /*", Pattern{"*", "/*"}},
		{"GET /static/*", Pattern{"GET", "/static/*"}},
		{"GET /*.png", Pattern{"GET", "/*.png"}},
		{"POST /api/*/edit", Pattern{"POST", "/api/*/edit"}},
		{"PROPFIND /dav/*", Pattern{"PROPFIND", "/dav/*"}},
		{"  DELETE   /x  ", Pattern{"DELETE", "/x"}},
	} {
		got, err := ParsePattern(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParsePattern(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		// String gives back the canonical form, which parses to the same.
		if again, err := ParsePattern(got.String()); err != nil || again != got {
			t.Errorf("ParsePattern(%q.String()) = %+v, %v", tc.in, again, err)
		}
	}
	for _, tc := range []struct{ in, wantErr string }{
		{"", "is not a pattern"},
		{"/static/*", "is not a pattern"},
		{"GET", "is not a pattern"},
		{"GET /a b", "is not a pattern"},
		{"get /x", `methods are uppercase: write "GET /x"`},
		{"Get /x", `methods are uppercase`},
		{"G3T /x", "is not valid"},
		{"** /x", "is not valid"},
		{"GET static/*", `must start with "/", as in "GET /static/*"`},
		{"GET *.png", `must start with "/", as in "GET /*.png"`},
		{"GET /x?a=1", "not the query"},
		{"GET /x#frag", "not the query"},
	} {
		got, err := ParsePattern(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParsePattern(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
		}
	}
}
