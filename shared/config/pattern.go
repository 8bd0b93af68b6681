package config

import (
	"fmt"
	"strings"
)

// ParsePattern parses a "METHOD PATH" mapping pattern. METHOD is "*" (any
// method) or an uppercase HTTP method token such as "GET"; PATH starts with
// "/" and may contain "*" anywhere, matching any run of characters. The
// admin API parses patterns with it too, so its errors are written for the
// person who typed the pattern.
func ParsePattern(s string) (Pattern, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return Pattern{}, fmt.Errorf("%q is not a pattern: write \"METHOD PATH\", such as \"GET /static/*\" or \"* /api/*\"", s)
	}
	method, path := f[0], f[1]
	if method != "*" && !isUpperToken(method) {
		if up := strings.ToUpper(method); isUpperToken(up) {
			return Pattern{}, fmt.Errorf("pattern %q: methods are uppercase: write %q", s, up+" "+path)
		}
		return Pattern{}, fmt.Errorf("pattern %q: method %q is not valid: use \"*\" or an uppercase HTTP method such as \"GET\"", s, method)
	}
	if !strings.HasPrefix(path, "/") {
		return Pattern{}, fmt.Errorf("pattern %q: the path must start with \"/\", as in %q", s, method+" /"+path)
	}
	if strings.ContainsAny(path, "?#") {
		return Pattern{}, fmt.Errorf("pattern %q: the path must not contain \"?\" or \"#\": patterns match the path only, not the query", s)
	}
	return Pattern{Method: method, Path: path}, nil
}

// isUpperToken reports whether s is a non-empty run of A-Z.
func isUpperToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}
