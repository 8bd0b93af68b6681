package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/lanes-dev/lanes/internal/lanestest"
	"github.com/valyala/fasthttp"
)

// startTimeout bounds how long any server under test may take to come up.
const startTimeout = 30 * time.Second

// server is a running server under test: lanesd, the origin or nginx.
type server struct {
	*lanestest.Proc
	addr  string // host:port clients connect to
	admin string // lanesd: the admin listener's host:port
	conf  string // lanesd: the config file, rewritten for a reload
	log   *logTail

	lanesd *lanestest.Lanesd // lanesd only
}

// configHeader starts every config the bench gives lanesd. The log level is
// info, not warn, because the ports are only known from the "listening"
// line; nothing logs at info per request once access_log is off.
const configHeader = `# Written by the lanes bench (go run ./bench).
listen           = "127.0.0.1:0"
shutdown_timeout = "2s"

admin {
  listen = "127.0.0.1:0"
}

log {
  level      = "info"
  access_log = false
}
`

// laneBlock returns one lane block with a fixed number of workers.
func laneBlock(name string, workers, concurrency int, extra string, maps ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nlane %q {\n  min_workers     = %d\n  max_workers     = %d\n  concurrency     = %d\n",
		name, workers, workers, concurrency)
	b.WriteString(extra)
	if len(maps) > 0 {
		q := make([]string, len(maps))
		for i, m := range maps {
			q[i] = fmt.Sprintf("%q", m)
		}
		fmt.Fprintf(&b, "  map             = [%s]\n", strings.Join(q, ", "))
	}
	b.WriteString("}\n")
	return b.String()
}

// startLanesd writes config to a file and runs lanesd on it until it logs
// that it is listening.
func (b *bench) startLanesd(name, config string) (*server, error) {
	return b.startLanesdWith(name, config, lanesdOpts{})
}

// lanesdOpts are the less common ways to start lanesd.
type lanesdOpts struct {
	// logFile sends lanesd's stderr to a file instead of a pipe into the
	// bench, so that a log line per request (access_log) costs lanesd what
	// it costs in production and the bench nothing.
	logFile bool
	// watch sees every line lanesd logs (not with logFile).
	watch func(line string)
}

func (b *bench) startLanesdWith(name, config string, o lanesdOpts) (*server, error) {
	dir, err := os.MkdirTemp(b.tmp, "lanesd-")
	if err != nil {
		return nil, err
	}
	log := &logTail{watch: o.watch}
	lo := lanestest.Options{
		Name:   name,
		Bin:    b.opt.lanesd,
		Dir:    dir,
		Output: log,
		// lanesd stops gracefully on SIGTERM within shutdown_timeout (2 s)
		// plus the time its workers take to exit.
		Proc:         procOptions(syscall.SIGTERM, 15*time.Second),
		StartTimeout: startTimeout,
		HTTP:         adminClient,
	}
	if o.logFile {
		lo.LogFile = filepath.Join(dir, "lanesd.log")
	}
	l, err := b.kids.launchLanesd(lo, config)
	if err != nil {
		return nil, err
	}
	if err := l.WaitReady(); err != nil {
		l.Stop()
		return nil, err
	}
	return &server{Proc: l.Proc, addr: l.Front, admin: l.Admin, conf: l.Config, log: log, lanesd: l}, nil
}

// catchUp reads what a lanesd that logs to a file wrote since it started
// listening, so that its warnings count in lanesdNotes.
func (s *server) catchUp() { s.lanesd.CatchUp() }

// originListening is the line the origin (this binary, -origin) and the
// bare proxy (-bare-proxy) write.
var originListening = regexp.MustCompile(`(?:origin|bare proxy) listening on (\S+)`)

// startOrigin runs this binary again as the origin server, a process of
// its own like the other servers measured.
func (b *bench) startOrigin() (*server, error) {
	return b.startSelf("origin", originFlag, "127.0.0.1:0")
}

// startSelf runs this binary again with args as the process name, until
// it says where it listens.
func (b *bench) startSelf(name string, args ...string) (*server, error) {
	exe, err := selfExe()
	if err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	log := &logTail{watch: func(line string) {
		if m := originListening.FindStringSubmatch(line); m != nil {
			select {
			case ready <- m[1]:
			default:
			}
		}
	}}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = log
	p, err := b.kids.start(name, cmd, syscall.SIGTERM, 5*time.Second)
	if err != nil {
		return nil, err
	}
	select {
	case addr := <-ready:
		return &server{Proc: p, addr: addr, log: log}, nil
	case <-p.Done():
		return nil, startupFailure(name, fmt.Errorf("exited before listening (%v)", p.Err()), log)
	case <-time.After(startTimeout):
		p.Stop()
		return nil, startupFailure(name, errors.New("not listening"), log)
	}
}

// findNginx returns the nginx binary to use, or "" when none is installed.
func findNginx(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	return ""
}

// nginxVersion returns e.g. "nginx/1.22.1".
func nginxVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	s := strings.TrimSpace(string(out))
	if i := strings.LastIndex(s, " "); i >= 0 {
		return s[i+1:]
	}
	return s
}

// nginxConf is the reverse proxy nginx runs for the comparison: as close
// to lanes' data path as nginx gets (HTTP/1.1 keep-alive to the origin, no
// buffering to disk for small bodies, no access log). keepalive_requests
// is raised on both sides because lanes caps neither.
const nginxConf = `# Written by the lanes bench (go run ./bench).
daemon           off;
master_process   on;
worker_processes auto;
pid              {{prefix}}/nginx.pid;
error_log        stderr warn;

events {
    worker_connections 4096;
}

http {
    access_log            off;
    keepalive_requests    1000000;
    client_body_temp_path {{prefix}}/client_body;
    proxy_temp_path       {{prefix}}/proxy;
    fastcgi_temp_path     {{prefix}}/fastcgi;
    uwsgi_temp_path       {{prefix}}/uwsgi;
    scgi_temp_path        {{prefix}}/scgi;

    upstream origin {
        server             {{origin}};
        keepalive          64;
        keepalive_requests 1000000;
    }

    server {
        listen {{listen}};
        location / {
            proxy_pass         http://origin;
            proxy_http_version 1.1;
            proxy_set_header   Connection "";
        }
    }
}
`

// startNginx runs nginx as a reverse proxy to origin on a free port.
func (b *bench) startNginx(bin, origin string) (*server, error) {
	return b.startOnFreePort("nginx", func(addr string) (*exec.Cmd, error) {
		prefix, err := os.MkdirTemp(b.tmp, "nginx-")
		if err != nil {
			return nil, err
		}
		// Run as root, nginx's workers switch to nobody, who must reach the
		// temp paths inside the prefix: through the bench's own directory
		// (0700 from MkdirTemp; 0711 lets them pass without listing it) into
		// the prefix. Without that, a response too big for proxy_buffers is
		// cut where nginx fails to open its temporary file.
		_ = os.Chmod(b.tmp, 0o711)
		_ = os.Chmod(prefix, 0o755)
		conf := strings.NewReplacer("{{prefix}}", prefix, "{{origin}}", origin, "{{listen}}", addr).Replace(nginxConf)
		file := filepath.Join(prefix, "nginx.conf")
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		// -e stderr: nginx opens its compiled-in error log before reading
		// the config unless told otherwise.
		return exec.Command(bin, "-p", prefix, "-c", file, "-e", "stderr"), nil
	})
}

// startOnFreePort runs a server that says nothing when ready (nginx,
// HAProxy) on a free loopback port, and waits until the port accepts. The
// port is found by listening on :0 and closing, so another process can
// take it before the server binds it: then the server exits, and the next
// of three attempts picks another.
func (b *bench) startOnFreePort(name string, command func(addr string) (*exec.Cmd, error)) (*server, error) {
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := b.tryOnFreePort(name, command)
		if err == nil {
			return s, nil
		}
		last = err
	}
	return nil, last
}

func (b *bench) tryOnFreePort(name string, command func(addr string) (*exec.Cmd, error)) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd, err := command(addr)
	if err != nil {
		return nil, err
	}
	return b.startAccepting(name, cmd, addr)
}

// startAccepting starts cmd, a server that says nothing when ready (nginx,
// HAProxy, gunicorn), and waits until addr accepts ("unix:PATH" for a unix
// socket), or the server exits, or startTimeout passes. Its stdout and
// stderr are kept for the report; SIGTERM stops it, and past 5 s the bench
// kills its process group.
func (b *bench) startAccepting(name string, cmd *exec.Cmd, addr string) (*server, error) {
	log := &logTail{}
	cmd.Stdout, cmd.Stderr = log, log
	p, err := b.kids.start(name, cmd, syscall.SIGTERM, 5*time.Second)
	if err != nil {
		return nil, err
	}
	network, dial := "tcp", addr
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, dial = "unix", path
	}
	deadline := time.Now().Add(startTimeout)
	for {
		if done, werr := p.Exited(); done {
			return nil, startupFailure(name, fmt.Errorf("exited (%v)", werr), log)
		}
		c, err := net.DialTimeout(network, dial, time.Second)
		if err == nil {
			c.Close()
			return &server{Proc: p, addr: addr, log: log}, nil
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, startupFailure(name, fmt.Errorf("not accepting on %s: %w", addr, err), log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port free at the moment.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// startReady is startLanesdWith, then a probe of path (wantLen as probe
// takes it): a lanesd that starts but does not answer is stopped and its
// name given in the error.
func (b *bench) startReady(name, config string, o lanesdOpts, path string, wantLen int) (*server, error) {
	l, err := b.startLanesdWith(name, config, o)
	if err != nil {
		return nil, err
	}
	if err := probe(l.addr, path, wantLen); err != nil {
		l.Stop()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return l, nil
}

// probe sends one GET and checks that it gets a 200 with a body of
// wantLen bytes (any length when wantLen < 0), so that a misconfigured
// target cannot post fast numbers made of errors.
func probe(addr, path string, wantLen int) error {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + path)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return fmt.Errorf("GET %s: status %d: %.200s", path, resp.StatusCode(), resp.Body())
	}
	if wantLen >= 0 && len(resp.Body()) != wantLen {
		return fmt.Errorf("GET %s: %d-byte body, want %d", path, len(resp.Body()), wantLen)
	}
	return nil
}
