package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// middleware is what every request passes before its route: panic
// recovery, the Host check (without a token), cross-origin protection for
// calls that change things, the bearer token, and JSON answers for paths
// and methods the mux does not know.
func (s *Server) middleware(mux *http.ServeMux) http.Handler {
	cop := http.NewCrossOriginProtection()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("admin handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
				writeError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		if s.o.Token == "" && !s.hostAllowed(r.Host) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("host %q refused: without an admin token only loopback names and the listen address are answered", r.Host))
			return
		}
		// A browser page elsewhere must not be able to POST to an admin
		// listener on localhost (CSRF); lanectl and curl send no Origin.
		if err := cop.Check(r); err != nil {
			writeError(w, http.StatusForbidden, "cross-origin request refused")
			return
		}
		if !isShell(r) && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lanes"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		if _, pattern := mux.Handler(r); pattern == "" {
			s.unrouted(w, r, mux)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// isShell says r asks for the dashboard's page shell, the one thing served
// without a token: it holds no data and no secret.
func isShell(r *http.Request) bool {
	return r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead)
}

// unrouted answers what the mux would answer with plain text (404, 405
// with Allow, a redirect to a cleaned path) as JSON, keeping its status
// and headers.
func (s *Server) unrouted(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) {
	h, _ := mux.Handler(r)
	rec := &headerRecorder{h: http.Header{}}
	h.ServeHTTP(rec, r)
	for _, k := range []string{"Allow", "Location"} {
		if v := rec.h.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	switch rec.code {
	case http.StatusMethodNotAllowed:
		writeError(w, rec.code, fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, r.URL.Path, rec.h.Get("Allow")))
	case http.StatusNotFound, 0:
		writeError(w, http.StatusNotFound, "no such admin call: "+r.Method+" "+r.URL.Path)
	default:
		writeError(w, rec.code, http.StatusText(rec.code))
	}
}

// headerRecorder keeps the status and headers of the mux's own answer and
// drops its plain-text body.
type headerRecorder struct {
	h    http.Header
	code int
}

func (r *headerRecorder) Header() http.Header { return r.h }
func (r *headerRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return len(b), nil
}
func (r *headerRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

// authorized checks "Authorization: Bearer TOKEN", the scheme in any case
// (RFC 9110 makes it case-insensitive), in constant time. Both sides are
// hashed first so that not even the token's length leaks.
func (s *Server) authorized(r *http.Request) bool {
	if s.o.Token == "" {
		return true
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	want := sha256.Sum256([]byte(s.o.Token))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// hostAllowed is the DNS-rebinding defence for an admin without a token:
// a page on evil.example whose name is rebound to 127.0.0.1 reaches the
// listener with "Host: evil.example". Loopback names and addresses and the
// configured listen host are answered, with any port.
func (s *Server) hostAllowed(hostport string) bool {
	host := hostOnly(hostport)
	if host == "" {
		return false
	}
	if isLoopback(host) {
		return true
	}
	if lh, _, err := net.SplitHostPort(s.o.Listen); err == nil && lh != "" {
		return strings.EqualFold(host, strings.TrimSuffix(lh, "."))
	}
	return false
}

// hostOnly is a Host header's host, without port, brackets or a final dot.
func hostOnly(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimPrefix(strings.TrimSuffix(host, "]"), "[")
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// WarnExposed says the admin listener would answer other machines with no
// token: listen is not a loopback address (an empty host is every
// interface) and token is empty. The supervisor logs a warning when true.
func WarnExposed(listen, token string) bool {
	if token != "" {
		return false
	}
	host := listen
	if h, _, err := net.SplitHostPort(listen); err == nil {
		host = h
	}
	host = strings.TrimPrefix(strings.TrimSuffix(host, "]"), "[")
	return host == "" || !isLoopback(strings.TrimSuffix(host, "."))
}
