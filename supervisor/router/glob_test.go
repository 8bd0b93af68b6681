package router

import (
	"regexp"
	"strings"
	"testing"
)

// refGlob is the reference matcher: the textbook recursive definition, where
// "*" matches any run of bytes. It is exponential in the number of stars, so
// the fuzz target bounds its inputs.
func refGlob(pattern, s string) bool {
	if pattern == "" {
		return s == ""
	}
	if pattern[0] == '*' {
		for i := 0; i <= len(s); i++ {
			if refGlob(pattern[1:], s[i:]) {
				return true
			}
		}
		return false
	}
	return s != "" && s[0] == pattern[0] && refGlob(pattern[1:], s[1:])
}

// latin1 maps each byte to the rune of the same value, so that regexp, which
// works on UTF-8 runes, matches byte by byte even for invalid UTF-8.
func latin1(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		sb.WriteRune(rune(s[i]))
	}
	return sb.String()
}

// regexpGlob is a second, independent reference: the pattern as a regexp.
func regexpGlob(pattern, s string) bool {
	parts := strings.Split(latin1(pattern), "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	re := regexp.MustCompile(`^(?s:` + strings.Join(parts, ".*") + `)$`)
	return re.MatchString(latin1(s))
}

func FuzzGlob(f *testing.F) {
	seeds := [][2]string{
		{"/*", "/"},
		{"/*", ""},
		{"/*.png", "/a/b/c.png"},
		{"/*.png", "/a.png.txt"},
		{"/*.png", "/.png"},
		{"/*.png", "/png"},
		{"/demo/sleep*", "/demo/sleep"},
		{"/demo/sleep*", "/demo/sleeper"},
		{"/user/*/edit", "/user/42/edit"},
		{"/user/*/edit", "/user//edit"},
		{"/user/*/edit", "/user/edit"},
		{"/a*a", "/a"},
		{"/a*a", "/aa"},
		{"/a*b*a", "/aba"},
		{"/a*b*a", "/ab"},
		{"/*ab*ab*", "/aabab"},
		{"/*aab", "/aaab"},
		{"/**", "/"},
		{"/x**y", "/xy"},
		{"/*a*a*a*", "/aa"},
		{"/*/\xff*", "/\xfe/\xff\x00"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		if !strings.HasPrefix(pattern, "/") || !strings.Contains(pattern, "*") {
			return // Compile rejects or routes these elsewhere
		}
		if len(pattern) > 32 || len(path) > 64 || strings.Count(pattern, "*") > 6 {
			return // keep the exponential reference fast
		}
		g := compileGlob("GET", pattern, target{})
		got := g.match([]byte(path))
		if want := refGlob(pattern, path); got != want {
			t.Fatalf("glob %q on %q: %v, reference %v", pattern, path, got, want)
		}
		if want := regexpGlob(pattern, path); got != want {
			t.Fatalf("glob %q on %q: %v, regexp %v", pattern, path, got, want)
		}
	})
}
