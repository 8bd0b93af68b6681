// Package config is the lanes configuration schema: typed structs decoded and
// validated once from HCL, with defaults in one place. Nothing outside this
// package reads config strings; durations are time.Duration, sizes are bytes.
package config

import (
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
)

// Config is a fully decoded and validated lanes configuration.
type Config struct {
	// File is the path the config was loaded from.
	File string

	Listen          string
	DebugHeaders    bool
	ShutdownTimeout time.Duration
	// StateDir is where lanesd keeps what must survive a restart: the
	// runtime and learned mappings. Written relative to the config file's
	// directory; by default a "state" directory beside fetchd's cache_dir
	// when fetchd runs (resolved as cache_dir is, from lanesd's working
	// directory), else data/state in the config file's directory.
	StateDir string

	Front Front
	Admin Admin
	Log   Log
	App   App

	// Themes, Fetchd and AutoMap are decoded and validated so that configs
	// written for later releases are checked now; the supervisor does not act
	// on them yet.
	Themes  []Theme
	Fetchd  *Fetchd
	AutoMap *AutoMap

	// Lanes in file order. A lane named "default" always exists: if the file
	// does not declare one it is added with default settings.
	Lanes []Lane
}

// Lane returns the lane named name, or nil.
func (c *Config) Lane(name string) *Lane {
	for i := range c.Lanes {
		if c.Lanes[i].Name == name {
			return &c.Lanes[i]
		}
	}
	return nil
}

// Front holds the client-facing listener's limits (block "front", optional).
type Front struct {
	ReadTimeout   time.Duration // whole request, headers and body (slowloris)
	WriteTimeout  time.Duration // whole response write
	IdleTimeout   time.Duration // keep-alive wait between requests
	MaxHeaderSize int           // bytes; larger request headers get 431
	MaxBodySize   int           // bytes; larger request bodies get 413
	MaxConns      int           // concurrent client connections (0: unlimited); past it a connection gets 503 and is closed
	// ClientBodyBuffer is how much of a request body the front holds in
	// memory; a larger body is spooled to a temporary file in the run
	// directory before a worker is taken, so a slow upload costs no worker.
	ClientBodyBuffer int
	// ResponseBuffer is how much of a worker's response the front holds in
	// memory for a client slower than the worker; past it the response
	// goes to a temporary file, up to MaxTempFile, so the worker is free
	// as soon as it has sent everything. Past MaxTempFile the worker waits
	// for the client (and its request_timeout still runs).
	ResponseBuffer int
	MaxTempFile    int64
	// RetryMethods are the methods a request may be retried with on
	// another worker when its worker died before answering.
	RetryMethods MethodSet
}

// MethodSet is a set of HTTP methods (a comparable value, so that Front
// stays comparable).
type MethodSet uint16

// Methods a MethodSet can hold, in this order.
var methodBits = [...]string{"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST", "PATCH", "TRACE"}

// MethodBit returns the set holding only method, or 0 for a method a
// MethodSet cannot hold.
func MethodBit(method string) MethodSet {
	for i, m := range methodBits {
		if m == method {
			return 1 << i
		}
	}
	return 0
}

// HasBytes says the set holds method.
func (s MethodSet) HasBytes(method []byte) bool {
	for i, m := range methodBits {
		if s&(1<<i) != 0 && string(method) == m {
			return true
		}
	}
	return false
}

// String lists the set's methods, comma-separated.
func (s MethodSet) String() string {
	var out []string
	for i, m := range methodBits {
		if s&(1<<i) != 0 {
			out = append(out, m)
		}
	}
	return strings.Join(out, ",")
}

// Admin is the admin listener (block "admin").
type Admin struct {
	Listen    string
	TokenFile string
	// MaxConns caps the admin listener's open connections; past it a
	// connection is closed at once, so that idle connections, which need no
	// token to open, cannot take the process's descriptors.
	MaxConns int
	// Token is the trimmed content of TokenFile, read at load time; empty
	// when TokenFile is unset.
	Token string
}

// Log configures logging (block "log").
type Log struct {
	Level        hclog.Level
	JSON         bool // format = "json"
	AccessLog    bool
	AccessFormat AccessFormat
	// AccessQuery logs requests' query strings (access_log_query): off
	// by default, as they often carry tokens and personal data.
	AccessQuery bool
}

// AccessFormat is the access log's line format (log.access_format).
type AccessFormat int

const (
	// AccessLanes is a line in the shape of lanesd's other lines: hclog's
	// key=value text, or JSON with format = "json".
	AccessLanes AccessFormat = iota
	// AccessCombined is Apache's and nginx's combined format, which
	// goaccess and log shippers parse, with lanes' times at the end.
	AccessCombined
)

func (f AccessFormat) String() string {
	if f == AccessCombined {
		return "combined"
	}
	return "lanes"
}

// App is what the built-in worker serves (block "app").
type App struct {
	Upstream string // "http://host:port" (or https); empty when Demo
	// UpstreamTimeout bounds connecting, sending and the wait for the
	// response header, then each wait between two reads of the body (as
	// nginx's proxy_read_timeout); the lane's request_timeout bounds the
	// whole request.
	UpstreamTimeout time.Duration
	Theme           string
	Demo            bool
	// UnderscoresInHeaders forwards request headers whose names contain
	// "_"; by default they are dropped, as nginx does, since "X_User" and
	// "X-User" reach many frameworks as the same variable.
	UnderscoresInHeaders bool
	// Direct makes the front proxy to Upstream itself, one hop, for every
	// lane that runs the built-in app: such a lane starts no worker
	// process, and its max_workers × concurrency are slots for concurrent
	// upstream requests. Never with a theme (it needs the worker hop).
	Direct bool
}

// Theme is a theme block; decoded and validated, not yet acted on.
type Theme struct {
	Name  string
	URL   string
	Rules []ThemeRule
	Range hcl.Range
	// URLRange is the range of the url attribute's value, for diagnostics
	// about the theme's origin (lanesd -check).
	URLRange hcl.Range
}

// ThemeRule is one rule inside a theme block.
type ThemeRule struct {
	Kind    string // replace, title, append, drop
	Theme   string // CSS selector in the theme page
	Content string // CSS selector in the content page
}

// Fetchd configures the fetch daemon; decoded and validated, not yet acted on.
type Fetchd struct {
	CacheDir     string
	Workers      int
	FetchTimeout time.Duration
	MinRefresh   time.Duration
	StaleWait    time.Duration
	MaxStale     time.Duration
}

// AutoMap configures automatic remapping of slow requests; decoded and
// validated, not yet acted on.
type AutoMap struct {
	Threshold   time.Duration
	Lane        string
	From        []string
	ForgetAfter time.Duration
	MaxEntries  int
}

// Lane is one lane block.
type Lane struct {
	Name           string
	MinWorkers     int
	MaxWorkers     int
	Concurrency    int
	MaxQueue       int
	QueueTimeout   time.Duration
	RequestTimeout time.Duration
	IdleTimeout    time.Duration
	MaxRequests    int
	// MaxRequestsJitter adds a random 0..N to each worker's MaxRequests,
	// so that workers started together do not all recycle together.
	MaxRequestsJitter int
	MaxRSS            int64 // bytes; 0: no limit
	Map               []Pattern
	// Command runs a custom worker built on worker.Serve; empty means the
	// built-in app (lanesd's own worker subcommand).
	Command []string
	// Exec runs each worker as a process of any program that serves
	// HTTP/1.1 on the socket lanesd hands it (an exec worker); Exec[0] is
	// resolved (PATH, or the config file's directory). Exclusive with
	// Command.
	Exec []string
	// ExecDir is the exec program's working directory: exec_dir, or the
	// config file's directory.
	ExecDir string
	// ExecEnv is exec_env: variables the program gets beside lanesd's
	// environment, "KEY=value", sorted by key.
	ExecEnv     []string
	ExecSocket  string        // ExecSocketFD (default) or ExecSocketPort
	HealthPath  string        // "" or a path starting with "/"
	Ready       string        // "" (at once, or once health_path answers) or ReadyNotify
	StopSignal  string        // a signal name, "SIGTERM" by default
	StopTimeout time.Duration // stop_signal to SIGKILL
	// Direct says the front proxies the lane's requests to app.upstream
	// itself (app.direct, and the lane runs the built-in app): no worker
	// processes, Slots() concurrent upstream requests.
	Direct bool
	// Range is where the lane block is declared, for later diagnostics.
	Range hcl.Range
}

// IsExec says the lane's workers are exec workers.
func (l *Lane) IsExec() bool { return len(l.Exec) > 0 }

// Slots is how many requests the lane runs at once when all its workers
// are up: max_workers × concurrency. A direct lane has exactly these.
func (l *Lane) Slots() int { return l.MaxWorkers * max(l.Concurrency, 1) }

// Values of exec_socket and ready.
const (
	ExecSocketFD   = "fd"
	ExecSocketPort = "port"
	ReadyNotify    = "notify"
)

// StopSignals are the signals stop_signal may name, by name.
var StopSignals = map[string]syscall.Signal{
	"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT,
	"SIGHUP": syscall.SIGHUP, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
	"SIGWINCH": syscall.SIGWINCH, "SIGKILL": syscall.SIGKILL,
}

// Pattern is one "METHOD PATH" mapping. Method is "*" for any method; in
// Path, "*" matches any run of characters.
type Pattern struct {
	Method string
	Path   string
}

// String returns the pattern as written: "METHOD PATH".
func (p Pattern) String() string { return p.Method + " " + p.Path }

// Defaults. Every default lives here and nowhere else.
const (
	DefaultStopSignal  = "SIGTERM"
	DefaultStopTimeout = 10 * time.Second

	DefaultListen          = "127.0.0.1:8080"
	DefaultAdminListen     = "127.0.0.1:8081"
	DefaultShutdownTimeout = 30 * time.Second

	DefaultReadTimeout   = 10 * time.Second
	DefaultWriteTimeout  = 60 * time.Second
	DefaultIdleTimeout   = 60 * time.Second
	DefaultMaxHeaderSize = 8 << 10
	DefaultMaxBodySize   = 16 << 20
	DefaultMaxConns      = 10000
	DefaultAdminMaxConns = 64
	// Buffers of the front: request bodies above ClientBodyBuffer and
	// responses above ResponseBuffer go to temporary files (nginx's
	// client_body_buffer_size and proxy_buffering).
	DefaultClientBodyBuffer = 64 << 10
	DefaultResponseBuffer   = 256 << 10
	DefaultMaxTempFile      = 1 << 30
	DefaultRetryMethods     = MethodSet(1<<0 | 1<<1 | 1<<2) // GET, HEAD, OPTIONS

	DefaultUpstreamTimeout = 60 * time.Second

	DefaultLaneName       = "default"
	DefaultMinWorkers     = 2
	DefaultConcurrency    = 1
	DefaultMaxQueue       = 100
	DefaultQueueTimeout   = 5 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	DefaultLaneIdle       = 60 * time.Second

	DefaultFetchdCacheDir = "./data/fetchd"
	// DefaultStateDir is state_dir's default, in the config file's
	// directory, when fetchd does not run; beside cache_dir when it does.
	DefaultStateDir           = "data/state"
	DefaultFetchdWorkers      = 2
	DefaultFetchdFetchTimeout = 10 * time.Second
	DefaultFetchdMinRefresh   = 5 * time.Second
	DefaultFetchdStaleWait    = 100 * time.Millisecond
	DefaultFetchdMaxStale     = 720 * time.Hour

	DefaultAutoMapForgetAfter = 10 * time.Minute
	DefaultAutoMapMaxEntries  = 10000
)
