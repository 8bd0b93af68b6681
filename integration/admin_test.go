package integration

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminToken: with admin.token_file set, every admin call needs the
// bearer token; lanectl passes it.
func TestAdminToken(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token-for-tests"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tok"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := startLanesdIn(t, dir, newTmp(t), `
admin {
  listen     = "127.0.0.1:0"
  token_file = "tok"
}
app {
  demo = true
}
lane "default" {
  min_workers = 1
}
lane "reports" {
  min_workers = 1
  map         = ["GET /report/*"]
}
`)
	status := "http://" + l.Admin + "/api/status"
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no token", "", 401},
		{"wrong token", "Bearer wrong", 401},
		{"token without Bearer", token, 401},
		{"right token", "Bearer " + token, 200},
	} {
		hdr := http.Header{}
		if tc.auth != "" {
			hdr.Set("Authorization", tc.auth)
		}
		r := do(l.client, http.MethodGet, status, nil, hdr)
		if r.err != nil || r.status != tc.want {
			t.Errorf("%s: want %d, got %s", tc.name, tc.want, r)
			continue
		}
		if tc.want == 401 {
			checkErrorBody(t, tc.name, r)
		}
	}
	// The dashboard's shell is served without the token, and holds neither
	// the token nor any status data: the page asks for the token itself.
	if r := do(l.client, http.MethodGet, "http://"+l.Admin+"/", nil, nil); r.err != nil || r.status != 200 {
		t.Errorf("dashboard shell without token: want 200, got %s", r)
	} else if strings.Contains(string(r.body), token) || strings.Contains(string(r.body), "reports") {
		t.Errorf("dashboard shell leaks the token or status data:\n%s", r.body)
	}

	code, out := l.lanectl(t, "-token", token, "status")
	if code != 0 {
		t.Errorf("lanectl status with the token: exit %d: %s", code, out)
	}
	for _, name := range []string{"default", "reports"} {
		if !strings.Contains(out, name) {
			t.Errorf("lanectl status does not list lane %q:\n%s", name, out)
		}
	}
	code, out = l.lanectl(t, "status")
	if code == 0 {
		t.Errorf("lanectl status without the token: exit 0; want a failure:\n%s", out)
	}
	if !strings.Contains(out, "401") {
		t.Errorf("lanectl status without the token does not say 401:\n%s", out)
	}
}
