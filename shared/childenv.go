package shared

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The environment of lanes' child processes. The names are part of the
// external contract (outside programs and scripts read them): keep them,
// add to them freely. WorkerEnv and FetchdEnv write and read them; nothing
// else does.
const (
	// EnvLane is the name of the lane a worker serves.
	EnvLane = "LANES_LANE"
	// EnvSocket is the unix socket path a worker serves its data plane on.
	EnvSocket = "LANES_SOCKET"
	// EnvParentPID is the supervisor's pid; a child whose parent changes
	// exits (the second layer beside Pdeathsig).
	EnvParentPID = "LANES_PARENT_PID"
	// EnvLogLevel is the hclog level name for the child's own log.
	EnvLogLevel = "LANES_LOG_LEVEL"
	// EnvApp is the JSON of AppWire, for the built-in worker.
	EnvApp = "LANES_APP"
	// EnvTheme is the JSON of WorkerTheme, for the built-in worker. Unset:
	// no theme.
	EnvTheme = "LANES_THEME"
	// EnvDebugHeaders is "1" when the config's debug_headers is on (the
	// built-in worker then answers X-Theme).
	EnvDebugHeaders = "LANES_DEBUG_HEADERS"
	// EnvMaxHeaderSize and EnvMaxBodySize carry the front's limits so the
	// worker's server accepts whatever the front accepted.
	EnvMaxHeaderSize = "LANES_MAX_HEADER_SIZE"
	EnvMaxBodySize   = "LANES_MAX_BODY_SIZE"
	// EnvFetchdSocket is the unix socket on which fetchd serves
	// ThemeService, in a worker's environment and in fetchd's own.
	EnvFetchdSocket = "LANES_FETCHD_SOCKET"
	// EnvFetchdConfig names, in fetchd's environment, the file that holds
	// its FetchdSettings as JSON: a file, because Linux caps one variable
	// at 128 KiB and a site may have many themes.
	EnvFetchdConfig = "LANES_FETCHD_CONFIG"
)

// ExecEnvReserved says lanes sets the variable k for an exec worker itself
// (its socket by socket activation, its lane, sd_notify, its port): lanesd's
// own value is not passed on, and exec_env may not set it.
func ExecEnvReserved(k string) bool {
	return strings.HasPrefix(k, "LANES_") || strings.HasPrefix(k, "LISTEN_") || k == "NOTIFY_SOCKET" || k == "PORT" ||
		strings.HasPrefix(k, "WATCHDOG_")
}

// WorkerEnv is the environment of a worker process. The supervisor builds
// it in parts, each encoded alone: what every worker of a config gets, what
// its lane adds, what the process adds (its socket). So a zero field is
// left out of Encode, and an unset variable decodes as the zero value.
type WorkerEnv struct {
	Lane      string // EnvLane
	Socket    string // EnvSocket
	ParentPID int    // EnvParentPID; 0: the supervisor is not watched
	LogLevel  string // EnvLogLevel; "": info

	// MaxHeaderSize and MaxBodySize are the front's limits, in bytes
	// (EnvMaxHeaderSize, EnvMaxBodySize); 0: the worker's defaults.
	MaxHeaderSize int
	MaxBodySize   int

	// For the built-in worker; a custom worker gets them too and may ignore
	// them.
	DebugHeaders bool         // EnvDebugHeaders
	App          *AppWire     // EnvApp
	Theme        *WorkerTheme // EnvTheme; nil: no theme
	FetchdSocket string       // EnvFetchdSocket; "": no theme applies
}

// AppWire is the app block as the built-in worker gets it: config.App
// without config's package, so that no worker links HCL.
type AppWire struct {
	Upstream             string        `json:"upstream,omitempty"`
	UpstreamTimeout      time.Duration `json:"upstream_timeout,omitempty"`
	Theme                string        `json:"theme,omitempty"`
	Demo                 bool          `json:"demo,omitempty"`
	UnderscoresInHeaders bool          `json:"underscores_in_headers,omitempty"`
}

// ThemeWire is a theme block as fetchd and the built-in worker get it
// (config.Theme without its source ranges).
type ThemeWire struct {
	Name  string          `json:"name"`
	URL   string          `json:"url"`
	Rules []ThemeRuleWire `json:"rules"`
}

// ThemeRuleWire is one rule of a ThemeWire.
type ThemeRuleWire struct {
	Kind    string `json:"kind"`
	Theme   string `json:"theme"`
	Content string `json:"content"`
}

// WorkerTheme is what the built-in worker needs to theme responses
// (EnvTheme): the theme block, and fetchd's stale_wait, from which the
// worker sets how long it waits for fetchd per request.
type WorkerTheme struct {
	Theme     ThemeWire     `json:"theme"`
	StaleWait time.Duration `json:"stale_wait"`
}

// Encode returns e's set fields as KEY=VALUE entries, in a fixed order.
func (e WorkerEnv) Encode() []string {
	var env []string
	add := func(name, v string) {
		if v != "" {
			env = append(env, name+"="+v)
		}
	}
	add(EnvLane, e.Lane)
	add(EnvSocket, e.Socket)
	add(EnvParentPID, itoa(e.ParentPID))
	add(EnvLogLevel, e.LogLevel)
	add(EnvMaxHeaderSize, itoa(e.MaxHeaderSize))
	add(EnvMaxBodySize, itoa(e.MaxBodySize))
	if e.DebugHeaders {
		add(EnvDebugHeaders, "1")
	}
	if e.App != nil {
		add(EnvApp, marshal(e.App))
	}
	if e.Theme != nil {
		add(EnvTheme, marshal(e.Theme))
	}
	add(EnvFetchdSocket, e.FetchdSocket)
	return env
}

// DecodeWorkerEnv reads a worker's environment through getenv (os.Getenv).
// A malformed value is an error that names its variable; every malformed
// one is reported.
func DecodeWorkerEnv(getenv func(string) string) (WorkerEnv, error) {
	d := decoder{getenv: getenv}
	e := WorkerEnv{
		Lane:          getenv(EnvLane),
		Socket:        getenv(EnvSocket),
		ParentPID:     d.count(EnvParentPID),
		LogLevel:      d.level(EnvLogLevel),
		MaxHeaderSize: d.count(EnvMaxHeaderSize),
		MaxBodySize:   d.count(EnvMaxBodySize),
		DebugHeaders:  d.flag(EnvDebugHeaders),
		FetchdSocket:  getenv(EnvFetchdSocket),
	}
	if d.json(EnvApp, &e.App) && e.App == nil {
		d.fail(EnvApp, errors.New("null instead of an app"))
	}
	if d.json(EnvTheme, &e.Theme) && e.Theme == nil {
		d.fail(EnvTheme, errors.New("null instead of a theme"))
	}
	if err := errors.Join(d.errs...); err != nil {
		return WorkerEnv{}, err
	}
	return e, nil
}

// FetchdEnv is the environment of the fetchd process. The supervisor adds
// the go-plugin handshake cookie, as for a worker.
type FetchdEnv struct {
	Socket    string // EnvFetchdSocket: where fetchd serves ThemeService
	Config    string // EnvFetchdConfig: the FetchdSettings file (WriteFetchdSettings)
	ParentPID int    // EnvParentPID; 0: the supervisor is not watched
	LogLevel  string // EnvLogLevel; "": info
}

// FetchdSettings is fetchd's configuration: the fetchd block and the
// themes, in the file EnvFetchdConfig names.
type FetchdSettings struct {
	Fetchd FetchdWire  `json:"fetchd"`
	Themes []ThemeWire `json:"themes"`
}

// FetchdWire is the fetchd block as fetchd gets it (config.Fetchd).
type FetchdWire struct {
	CacheDir     string        `json:"cache_dir"` // absolute: fetchd may run elsewhere
	Workers      int           `json:"workers"`
	FetchTimeout time.Duration `json:"fetch_timeout"`
	MinRefresh   time.Duration `json:"min_refresh"`
	StaleWait    time.Duration `json:"stale_wait"`
	MaxStale     time.Duration `json:"max_stale"`
}

// Encode returns e's set fields as KEY=VALUE entries, in a fixed order.
func (e FetchdEnv) Encode() []string {
	var env []string
	add := func(name, v string) {
		if v != "" {
			env = append(env, name+"="+v)
		}
	}
	add(EnvFetchdSocket, e.Socket)
	add(EnvFetchdConfig, e.Config)
	add(EnvParentPID, itoa(e.ParentPID))
	add(EnvLogLevel, e.LogLevel)
	return env
}

// DecodeFetchdEnv reads fetchd's environment through getenv (os.Getenv).
// A malformed value is an error that names its variable.
func DecodeFetchdEnv(getenv func(string) string) (FetchdEnv, error) {
	d := decoder{getenv: getenv}
	e := FetchdEnv{
		Socket:    getenv(EnvFetchdSocket),
		Config:    getenv(EnvFetchdConfig),
		ParentPID: d.count(EnvParentPID),
		LogLevel:  d.level(EnvLogLevel),
	}
	if err := errors.Join(d.errs...); err != nil {
		return FetchdEnv{}, err
	}
	return e, nil
}

// WriteFetchdSettings writes s to path, readable by this user only.
func WriteFetchdSettings(path string, s FetchdSettings) error {
	if err := os.WriteFile(path, []byte(marshal(s)), 0o600); err != nil {
		return fmt.Errorf("write fetchd settings: %w", err)
	}
	return nil
}

// ReadFetchdSettings reads the file WriteFetchdSettings wrote.
func ReadFetchdSettings(path string) (FetchdSettings, error) {
	var s FetchdSettings
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil {
		return FetchdSettings{}, fmt.Errorf("read fetchd settings (%s): %w", EnvFetchdConfig, err)
	}
	return s, nil
}

// decoder reads variables and collects what is wrong with them.
type decoder struct {
	getenv func(string) string
	errs   []error
}

func (d *decoder) fail(name string, err error) {
	d.errs = append(d.errs, fmt.Errorf("lanes: environment %s: %w", name, err))
}

// count reads a non-negative integer; unset is 0.
func (d *decoder) count(name string) int {
	v := d.getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		d.fail(name, fmt.Errorf("%q is not a non-negative integer", v))
		return 0
	}
	return n
}

// flag reads "1" (or another strconv.ParseBool spelling); unset is false.
func (d *decoder) flag(name string) bool {
	v := d.getenv(name)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		d.fail(name, fmt.Errorf("%q is not 1 or 0", v))
	}
	return b
}

// level reads an hclog level name.
func (d *decoder) level(name string) string {
	v := d.getenv(name)
	if v != "" && hclog.LevelFromString(v) == hclog.NoLevel {
		d.fail(name, fmt.Errorf("%q is not a log level (trace, debug, info, warn, error, off)", v))
		return ""
	}
	return v
}

// json decodes JSON into dst and reports whether the variable was set and
// decoded.
func (d *decoder) json(name string, dst any) bool {
	v := d.getenv(name)
	if v == "" {
		return false
	}
	if err := json.Unmarshal([]byte(v), dst); err != nil {
		d.fail(name, fmt.Errorf("invalid JSON: %w", err))
		return false
	}
	return true
}

func itoa(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// marshal is json.Marshal of the plain structs above, which cannot fail.
func marshal(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("lanes: encode %T: %v", v, err))
	}
	return string(b)
}
