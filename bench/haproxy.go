package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// HAProxy is the second anchor of the proxy rows, beside nginx: the other
// reverse proxy operators put in front of an app, and the one whose
// per-backend queue and maxconn lanes' lanes resemble most.

// findHAProxy returns the haproxy binary to use, or "" when none is
// installed.
func findHAProxy(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	return ""
}

// haproxyVersion returns e.g. "HAProxy/2.6.12".
func haproxyVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	f := strings.Fields(string(out))
	if len(f) >= 3 && f[0] == "HAProxy" {
		return "HAProxy/" + strings.SplitN(f[2], "-", 2)[0]
	}
	return "HAProxy"
}

// haproxyConf is the reverse proxy HAProxy runs for the comparison, as
// close to nginx's (and lanes') data path as it gets: HTTP mode, one
// thread per CPU (its default), keep-alive on both sides with server
// connections reused by any client (http-reuse always, like nginx's
// upstream keepalive), no logging.
const haproxyConf = `# Written by the lanes bench (go run ./bench).
global
    maxconn 8192

defaults
    mode            http
    option          http-keep-alive
    http-reuse      always
    timeout connect 5s
    timeout client  60s
    timeout server  60s

frontend bench
    bind {{listen}}
    default_backend origin

backend origin
    server origin {{origin}}
`

// startHAProxy runs HAProxy as a reverse proxy to origin on a free port.
func (b *bench) startHAProxy(bin, origin string) (*server, error) {
	return b.startOnFreePort("haproxy", func(addr string) (*exec.Cmd, error) {
		dir, err := os.MkdirTemp(b.tmp, "haproxy-")
		if err != nil {
			return nil, err
		}
		file := filepath.Join(dir, "haproxy.cfg")
		conf := strings.NewReplacer("{{origin}}", origin, "{{listen}}", addr).Replace(haproxyConf)
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		// -db: stay in the foreground; -W: master-worker, so that SIGTERM
		// to the master stops the whole of it.
		return exec.Command(bin, "-W", "-db", "-f", file), nil
	})
}
