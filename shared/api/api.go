// Package api is the admin API's wire types: the one definition of every
// document the admin listener serves or accepts, shared by the supervisor
// (which fills them), the admin server (which encodes them) and lanectl
// (which decodes them). Field names are the external contract that users
// and outside tests rely on (the README's admin API table); add fields
// freely, never rename one.
package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Status is GET /api/status.
type Status struct {
	PID     int        `json:"pid"`
	UptimeS float64    `json:"uptime_s"`
	Listen  string     `json:"listen"`
	Config  string     `json:"config"`
	Lanes   []Lane     `json:"lanes"`
	Front   Front      `json:"front"`
	AutoMap *AutoMap   `json:"auto_map,omitempty"`
	Fetchd  Fetchd     `json:"fetchd"`
	Themes  []Theme    `json:"themes"`
	Reload  *ReloadLog `json:"last_reload,omitempty"`
}

// Front is the client listener's own counters.
type Front struct {
	AcceptErrors uint64 `json:"accept_errors"` // EMFILE/ENFILE and other temporary accept failures, retried
	Truncated    uint64 `json:"truncated"`     // responses cut short by a failing worker or upstream
	Retries      uint64 `json:"retries"`       // requests retried on another worker after theirs died
}

// Lane is one lane in Status.
type Lane struct {
	Name           string   `json:"name"`
	State          string   `json:"state"` // "ok", "draining", "crash_loop", "stopping"
	MinWorkers     int      `json:"min_workers"`
	MaxWorkers     int      `json:"max_workers"`
	Concurrency    int      `json:"concurrency"`
	MaxQueue       int      `json:"max_queue"`
	QueueTimeout   string   `json:"queue_timeout"`
	RequestTimeout string   `json:"request_timeout"`
	IdleTimeout    string   `json:"idle_timeout"`
	Workers        []Worker `json:"workers"`
	// WorkersByState counts Workers by their State.
	WorkersByState map[string]int `json:"workers_by_state"`
	Queued         int            `json:"queued"`
	Inflight       int            `json:"inflight"`
	Served         uint64         `json:"served"`
	Rejected       uint64         `json:"rejected"`
	Timeouts       uint64         `json:"timeouts"`
	Killed         uint64         `json:"killed"`
	Respawns       uint64         `json:"respawns"`  // workers started to replace one that died or was killed, or by a drain or recycle
	ScaleUps       uint64         `json:"scale_ups"` // workers started for load or a larger min_workers
	Drains         uint64         `json:"drains"`
	Draining       bool           `json:"draining"`
	Latency        Percentiles    `json:"latency_ms"`
	CrashLoop      bool           `json:"crash_loop"`
	Crashes        int            `json:"consecutive_crashes"`
	BackoffMS      int64          `json:"backoff_ms"`
	LastExit       string         `json:"last_exit,omitempty"`
	// LastDrain says how the last drain (or rolling replacement) ended:
	// "done: N replaced", or why it stopped with the old workers kept.
	LastDrain string `json:"last_drain,omitempty"`
	// Direct says the front proxies the lane's requests to the upstream
	// itself (app.direct): Workers is empty, and Slots (max_workers ×
	// concurrency) bounds its concurrent upstream requests, Inflight of
	// them in use.
	Direct bool `json:"direct,omitempty"`
	Slots  int  `json:"slots,omitempty"`
}

// Worker is one worker process of a lane.
type Worker struct {
	PID      int     `json:"pid"`
	State    string  `json:"state"` // starting, ready, retiring, killing, stopping, dead
	Inflight int     `json:"inflight"`
	Served   uint64  `json:"served"`
	RSS      int64   `json:"rss"` // bytes
	UptimeS  float64 `json:"uptime_s"`
	// As of the worker's last health check (every 5 s): its goroutines,
	// and the heap objects it has allocated since it started.
	Goroutines int    `json:"goroutines"`
	Allocs     uint64 `json:"allocs"`
	// Exec workers: the program's last sd_notify STATUS= line.
	Status string `json:"status,omitempty"`
}

// Percentiles of recent requests' total times, in milliseconds.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// AutoMap is the auto_map learner's state.
type AutoMap struct {
	Lane        string   `json:"lane"`
	From        []string `json:"from"`
	Threshold   string   `json:"threshold"`
	ForgetAfter string   `json:"forget_after"`
	MaxEntries  int      `json:"max_entries"`
	Entries     int      `json:"entries"`
	Learned     uint64   `json:"learned"`
	Forgotten   uint64   `json:"forgotten"`
	Evicted     uint64   `json:"evicted"`
}

// Mapping is one entry of GET /api/map.
type Mapping struct {
	Lane    string `json:"lane"`
	Method  string `json:"method"`
	Pattern string `json:"pattern"`
	// Dynamic is true for a mapping added at runtime (POST /api/map) or
	// learned by auto_map; false for one from the config file.
	Dynamic bool `json:"dynamic"`
	// Source says where it came from: "config", "api" or "auto_map".
	Source  string     `json:"source"`
	Hits    uint64     `json:"hits"`
	Added   time.Time  `json:"added"`
	LastHit *time.Time `json:"last_hit"` // null until first hit
}

// Mapping sources.
const (
	SourceConfig  = "config"
	SourceAPI     = "api"
	SourceAutoMap = "auto_map"
)

// MapRequest is the body of POST /api/map.
type MapRequest struct {
	Lane    string `json:"lane"`
	Method  string `json:"method"`
	Pattern string `json:"pattern"`
}

// UnmapRequest is the body of DELETE /api/map.
type UnmapRequest struct {
	Method  string `json:"method"`
	Pattern string `json:"pattern"`
}

// UnmapResult answers DELETE /api/map.
type UnmapResult struct {
	Method  string `json:"method"`
	Pattern string `json:"pattern"`
	Removed bool   `json:"removed"`
}

// ResizeRequest is the body of POST /api/lanes/NAME/resize; an omitted
// field keeps its value.
type ResizeRequest struct {
	MinWorkers *int `json:"min_workers,omitempty"`
	MaxWorkers *int `json:"max_workers,omitempty"`
}

// ResizeResult answers a resize.
type ResizeResult struct {
	Lane       string `json:"lane"`
	MinWorkers int    `json:"min_workers"`
	MaxWorkers int    `json:"max_workers"`
}

// DrainResult answers POST /api/lanes/NAME/drain: the drain has started.
type DrainResult struct {
	Lane    string `json:"lane"`
	Workers int    `json:"workers"` // workers to be replaced
	Started bool   `json:"started"`
}

// ReloadResult answers POST /api/reload: what the new config changed.
type ReloadResult struct {
	Config  string   `json:"config"`
	Changed []string `json:"changed"` // one line per change, e.g. "lane slow: resized 2..4 -> 3..6"
}

// ReloadLog is the last reload as Status shows it.
type ReloadLog struct {
	At      time.Time `json:"at"`
	OK      bool      `json:"ok"`
	Changed []string  `json:"changed,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// Fetchd is the fetch daemon's state.
type Fetchd struct {
	Enabled      bool   `json:"enabled"`
	PID          int    `json:"pid"`
	State        string `json:"state"` // starting, ready, restarting, blocked (cache_dir in use), stopped
	Restarts     uint64 `json:"restarts"`
	CacheEntries int    `json:"cache_entries"`
	CacheBytes   int64  `json:"cache_bytes"`
	LastError    string `json:"last_error,omitempty"`
}

// Theme is one theme's state.
type Theme struct {
	Name           string     `json:"name"`
	URL            string     `json:"url"`
	State          string     `json:"state"` // fresh, stale, unthemed (no usable copy), expired
	AgeS           float64    `json:"age_s"`
	MaxStaleS      float64    `json:"max_stale_s"` // fetchd's max_stale: older than this, the copy is not served
	Version        string     `json:"version"`
	LastFetch      *time.Time `json:"last_fetch"`
	LastError      string     `json:"last_error,omitempty"`
	Fetches        uint64     `json:"fetches"`
	NotModified    uint64     `json:"not_modified"`
	Failures       uint64     `json:"failures"`
	Rejected       uint64     `json:"rejected"`
	StaleServes    uint64     `json:"stale_serves"`
	UnthemedServes uint64     `json:"unthemed_serves"`
}

// ErrorBody is every error answer: a 4xx (or 5xx) with {"error": ...}.
type ErrorBody struct {
	Error string `json:"error"`
	// Diagnostics are a refused config's problems, each
	// "FILE:LINE,COL: summary; detail".
	Diagnostics []string `json:"diagnostics,omitempty"`
}

// Error is an error with the HTTP status the admin API answers it with.
// Backends return it for refused calls; any other error is a 500.
type Error struct {
	Code        int
	Msg         string
	Diagnostics []string
}

func (e *Error) Error() string { return e.Msg }

// Errorf returns an *Error with code.
func Errorf(code int, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Common refusals.
func BadRequest(format string, args ...any) error {
	return Errorf(http.StatusBadRequest, format, args...)
}
func NotFound(format string, args ...any) error { return Errorf(http.StatusNotFound, format, args...) }
func Conflict(format string, args ...any) error { return Errorf(http.StatusConflict, format, args...) }

// Code returns the HTTP status for err: its own for an *Error, else 500.
func Code(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return http.StatusInternalServerError
}

// InflightRequest is one request a worker runs now (GET /api/requests).
type InflightRequest struct {
	Lane   string `json:"lane"`
	Worker int    `json:"worker"` // the worker's pid
	Method string `json:"method"`
	Path   string `json:"path"`
	Client string `json:"client"`
	// Elapsed is how long it has run since it got its worker, and
	// TimeoutIn how long it has left before the lane's request_timeout
	// ends it (504, worker killed); in seconds.
	Elapsed   float64 `json:"elapsed"`
	TimeoutIn float64 `json:"timeout_in"`
	Queued    float64 `json:"queued"` // seconds it waited for its worker
}

// Event kinds (GET /api/events).
const (
	EventKill      = "kill"      // a worker killed: hard timeout or failed health check
	EventCrash     = "crash"     // a worker exited by itself, or failed to start
	EventLearned   = "learned"   // auto_map learned a mapping
	EventForgotten = "forgotten" // auto_map forgot one
	EventReload    = "reload"    // a config reload, applied or refused
	EventDrain     = "drain"     // a drain began or ended
	EventResize    = "resize"    // a lane's sizes changed
)

// Event is one entry of the recent events (GET /api/events?since=ID), in
// order of ID.
type Event struct {
	ID     uint64    `json:"id"`
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Lane   string    `json:"lane,omitempty"`
	PID    int       `json:"pid,omitempty"`
	Method string    `json:"method,omitempty"`
	Path   string    `json:"path,omitempty"`
	Detail string    `json:"detail,omitempty"`
}
