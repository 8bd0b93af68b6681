package lanestest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// ListeningRE matches the line lanesd logs, at info level, once both of
// its listeners accept and every lane's first workers are ready.
var ListeningRE = regexp.MustCompile(`lanesd: listening: front=(\S+) admin=(\S+)`)

// ConfigName is the config file's name in Options.Dir.
const ConfigName = "lanes.hcl"

// Options say how to run lanesd.
type Options struct {
	// Name names the process in errors; default "lanesd".
	Name string
	// Bin is the lanesd binary; a relative path is taken from the
	// caller's working directory.
	Bin string
	// Dir gets the config file, and is lanesd's working directory: files
	// the config names relative to itself are found there.
	Dir string
	// Env is added to lanesd's environment (the caller's), e.g.
	// "TMPDIR=..." for a run directory of its own.
	Env []string
	// Command, when set, makes the command that runs lanesd on the config
	// file at path instead of `Bin -config path`: through env(1) or a shell
	// that sets limits first. It must exec lanesd, so that the pid is
	// lanesd's.
	Command func(path string) *exec.Cmd
	// Output, when set, gets a copy of everything lanesd writes.
	Output io.Writer
	// LogFile, when set, gets lanesd's stderr instead of a pipe, so that a
	// log line per request costs lanesd what it costs in production and
	// the caller nothing; the Log then holds what was read of it (until
	// lanesd listens, and at each CatchUp).
	LogFile string
	// Proc says how lanesd is stopped (default: SIGTERM, SIGKILL 10s later).
	Proc ProcOptions
	// StartTimeout bounds the wait for lanesd to listen and its admin API
	// to answer; default 60s.
	StartTimeout time.Duration
	// HTTP and Token are the admin API client's.
	HTTP  *http.Client
	Token string
}

// Lanesd is one running lanesd.
type Lanesd struct {
	*Proc
	Front  string // host:port of the front listener; set by WaitReady
	Admin  string // host:port of the admin listener; set by WaitReady
	Dir    string
	Config string // the config file's path
	Log    *Log
	// API calls its admin listener; set by WaitReady.
	API *api.Client

	opt       Options
	listening chan [2]string
	follow    *follower
}

// Start writes config to Dir and runs lanesd on it until it is ready
// (WaitReady). If it does not get there, it is stopped, and the error
// holds its log.
func Start(o Options, config string) (*Lanesd, error) {
	l, err := Launch(o, config)
	if err != nil {
		return nil, err
	}
	if err := l.WaitReady(); err != nil {
		l.Stop()
		return nil, err
	}
	return l, nil
}

// Launch writes config to Dir and starts lanesd, without waiting.
func Launch(o Options, config string) (*Lanesd, error) {
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	path := filepath.Join(o.Dir, ConfigName)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return nil, err
	}
	l := &Lanesd{Dir: o.Dir, Config: path, opt: o, listening: make(chan [2]string, 1)}
	l.Log = newLog(o.Output, func(line string) {
		if m := ListeningRE.FindStringSubmatch(line); m != nil {
			select {
			case l.listening <- [2]string{m[1], m[2]}:
			default:
			}
		}
	})
	bin := o.Bin
	if strings.ContainsRune(bin, '/') {
		// lanesd runs in Dir: a path relative to here must still find it.
		abs, err := filepath.Abs(bin)
		if err != nil {
			return nil, err
		}
		bin = abs
	}
	var cmd *exec.Cmd
	if o.Command != nil {
		cmd = o.Command(path)
	} else {
		cmd = exec.Command(bin, "-config", path)
	}
	cmd.Dir = o.Dir
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.Stdout = l.Log
	cmd.Stderr = l.Log
	var logf *os.File
	if o.LogFile != "" {
		var err error
		if logf, err = os.Create(o.LogFile); err != nil {
			return nil, err
		}
		defer logf.Close() // the child has its own descriptor
		cmd.Stderr = logf
	}
	if o.Name == "" {
		o.Name = "lanesd"
	}
	p, err := StartProc(o.Name, cmd, o.Proc)
	if err != nil {
		return nil, err
	}
	l.Proc = p
	if logf != nil {
		l.follow = &follower{file: logf.Name(), log: l.Log, stop: make(chan struct{})}
		go l.follow.run()
	}
	return l, nil
}

// WaitReady waits until lanesd logs that it listens, which says where,
// and then until its admin API answers (a refusal for want of a token
// counts: it answers).
func (l *Lanesd) WaitReady() error {
	deadline := time.NewTimer(l.opt.StartTimeout)
	defer deadline.Stop()
	if l.follow != nil {
		defer l.follow.stopOnce.Do(func() { close(l.follow.stop) })
	}
	select {
	case a := <-l.listening:
		l.Front, l.Admin = a[0], a[1]
	case <-l.Done():
		return l.failure(fmt.Errorf("exited before listening (%v)", l.Err()))
	case <-deadline.C:
		return l.failure(fmt.Errorf("did not log its listening line within %v", l.opt.StartTimeout))
	}
	l.API = &api.Client{Base: "http://" + l.Admin, Token: l.opt.Token, HTTP: l.opt.HTTP}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := l.API.Status(ctx)
		cancel()
		var se *api.ServerError
		if err == nil || errors.As(err, &se) {
			return nil
		}
		select {
		case <-l.Done():
			return l.failure(fmt.Errorf("exited before its admin API answered (%v)", l.Err()))
		case <-deadline.C:
			return l.failure(fmt.Errorf("admin API at %s not answering within %v: %w", l.Admin, l.opt.StartTimeout, err))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (l *Lanesd) failure(err error) error {
	l.CatchUp()
	return fmt.Errorf("%s (pid %d) %w; its log:\n%s", l.Name, l.PID, err, l.Log)
}

// URL is the front's URL for path.
func (l *Lanesd) URL(path string) string { return "http://" + l.Front + path }

// WriteConfig replaces the config file, for a reload.
func (l *Lanesd) WriteConfig(config string) error {
	return os.WriteFile(l.Config, []byte(config), 0o600)
}

// CatchUp reads what a lanesd that logs to a file (Options.LogFile)
// wrote since it listened into the Log.
func (l *Lanesd) CatchUp() {
	if l.follow != nil {
		l.follow.read()
	}
}

var (
	topListen  = regexp.MustCompile(`(?m)^listen\s*=`)
	adminBlock = regexp.MustCompile(`(?m)^\s*admin\s*\{`)
)

// Ephemeral completes config with listeners on ports the kernel picks:
// listen = "127.0.0.1:0" unless it sets a top-level listen, and an admin
// block on 127.0.0.1:0 unless it has one.
func Ephemeral(config string) string {
	var b strings.Builder
	if !topListen.MatchString(config) {
		b.WriteString("listen = \"127.0.0.1:0\"\n")
	}
	if !adminBlock.MatchString(config) {
		b.WriteString("admin {\n  listen = \"127.0.0.1:0\"\n}\n")
	}
	b.WriteString(config)
	return b.String()
}
