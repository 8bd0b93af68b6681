package httpx

import (
	"strings"
	"testing"
)

func TestIsToken(t *testing.T) {
	for s, want := range map[string]bool{"X-Forwarded-For": true, "a_b": true, "": false, "X Bad": false, "Transfer Encoding": false, "é": false, "a:b": false, "!#$%&'*+-.^_`|~09azAZ": true} {
		if IsToken([]byte(s)) != want {
			t.Errorf("IsToken(%q) = %v", s, !want)
		}
	}
}

func TestAppendTokens(t *testing.T) {
	got := AppendTokens(nil, []byte(" keep-alive ,, X-Forwarded-For,\tclose "))
	var s []string
	for _, g := range got {
		s = append(s, string(g))
	}
	if strings.Join(s, "|") != "keep-alive|X-Forwarded-For|close" {
		t.Errorf("AppendTokens = %q", s)
	}
	if !ContainsFold([]byte("x-forwarded-for"), got) || ContainsFold([]byte("Host"), got) {
		t.Error("ContainsFold")
	}
}

func TestIsScheme(t *testing.T) {
	if !IsScheme([]byte("https")) || !IsScheme([]byte("svn+ssh")) || IsScheme([]byte("ht tp")) {
		t.Error("IsScheme")
	}
}
