// Package admin is the supervisor's admin listener (the monitor lane): the
// JSON API, the dashboard and the metrics, served by the front process
// itself and never through a worker lane, so it answers when every lane is
// saturated. It runs on net/http, not fasthttp: it is not a hot path, and
// net/http gives method routing, body limits and timeouts for free.
//
// The package owns the HTTP side only — routing, authentication, request
// validation and the one error shape ({"error": ...}, api.ErrorBody); what a
// call does is the Backend's business.
package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/api"
)

// Backend is what the admin API controls: the running supervisor. Errors
// that are an *api.Error are answered with their Code, Msg and
// Diagnostics; any other error is a 500.
type Backend interface {
	Status() api.Status
	Mappings() []api.Mapping
	Map(api.MapRequest) (api.Mapping, error)
	Unmap(api.UnmapRequest) error
	Resize(lane string, r api.ResizeRequest) (api.ResizeResult, error)
	Drain(lane string) (api.DrainResult, error)
	Reload() (api.ReloadResult, error)
	Requests() []api.InflightRequest
	Events(since uint64) []api.Event
	// Samples are the last minutes of every lane, or of the one named
	// lane ("": all), after sample since.
	Samples(lane string, since uint64) (api.Samples, error)
}

// Options configure the admin server.
type Options struct {
	// Token, when set, is required as "Authorization: Bearer TOKEN" on
	// every call except the dashboard's page shell (GET /), which holds no
	// data and no secret.
	Token string
	// Listen is the configured admin listen address. Without a Token only
	// requests whose Host is this address or a loopback name are answered
	// (a defence against DNS rebinding).
	Listen  string
	Backend Backend
	// Metrics is served at GET /metrics; nil answers 404.
	Metrics http.Handler
	Log     hclog.Logger
}

// Server timeouts. A reload may spawn workers, so writes get longer than
// reads; nothing here streams.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 64 << 10
)

// Server is the admin listener's HTTP server.
type Server struct {
	o       Options
	log     hclog.Logger
	mux     *http.ServeMux
	handler http.Handler
	srv     *http.Server
}

// New returns the admin server; Serve it on a listener.
func New(o Options) *Server {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	s := &Server{o: o, log: o.Log, mux: http.NewServeMux()}
	s.routes()
	s.handler = s.middleware(s.mux)
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          o.Log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	return s
}

// Handler is the whole admin API as one handler, for tests (httptest).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers on l until Shutdown; it returns nil after a Shutdown and
// the listener's error otherwise. The caller wraps l with its own
// connection cap and accept back-off.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, waits for in-flight calls until ctx ends, then
// closes whatever connections remain.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	return err
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /{$}", s.dashboard)
	m.HandleFunc("GET /api/status", s.status)
	m.HandleFunc("GET /api/map", s.mappings)
	m.HandleFunc("POST /api/map", s.addMapping)
	m.HandleFunc("DELETE /api/map", s.removeMapping)
	m.HandleFunc("POST /api/lanes/{name}/resize", s.resize)
	m.HandleFunc("POST /api/lanes/{name}/drain", s.drain)
	m.HandleFunc("POST /api/reload", s.reload)
	m.HandleFunc("GET /metrics", s.metrics)
	m.HandleFunc("GET /api/requests", s.requests)
	m.HandleFunc("GET /api/events", s.events)
	m.HandleFunc("GET /api/samples", s.samples)
	// Go's profiles of lanesd itself (goroutines, heap, CPU for ?seconds=N,
	// at most writeTimeout): what is needed to explain a front that grows
	// or spins, without restarting it under a debug build. Behind the
	// token like every call.
	m.HandleFunc("GET /debug/pprof/", pprof.Index)
	m.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	m.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.o.Backend.Status())
}

func (s *Server) requests(w http.ResponseWriter, r *http.Request) {
	rs := s.o.Backend.Requests()
	if rs == nil {
		rs = []api.InflightRequest{}
	}
	writeJSON(w, http.StatusOK, rs)
}

// events answers the recent events after ?since=ID (0 or absent: all that
// are kept).
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	since, ok := sinceParam(w, r, "the id of the last event seen")
	if !ok {
		return
	}
	es := s.o.Backend.Events(since)
	if es == nil {
		es = []api.Event{}
	}
	writeJSON(w, http.StatusOK, es)
}

// samples answers the lanes' samples (?lane=NAME: one lane's) after
// ?since=SEQ (0 or absent: the whole window).
func (s *Server) samples(w http.ResponseWriter, r *http.Request) {
	since, ok := sinceParam(w, r, "the seq of the last sample seen")
	if !ok {
		return
	}
	res, err := s.o.Backend.Samples(r.URL.Query().Get("lane"), since)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// sinceParam reads ?since=N (absent: 0); on a bad value it has answered
// 400, saying that N is what.
func sinceParam(w http.ResponseWriter, r *http.Request, what string) (uint64, bool) {
	v := r.URL.Query().Get("since")
	if v == "" {
		return 0, true
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("since=%q: give %s, a whole number", v, what))
		return 0, false
	}
	return n, true
}

func (s *Server) mappings(w http.ResponseWriter, r *http.Request) {
	ms := s.o.Backend.Mappings()
	if ms == nil {
		ms = []api.Mapping{} // a list, never null
	}
	writeJSON(w, http.StatusOK, ms)
}

func (s *Server) addMapping(w http.ResponseWriter, r *http.Request) {
	var req api.MapRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if msg := missing("lane", req.Lane, "method", req.Method, "pattern", req.Pattern); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	m, err := s.o.Backend.Map(req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("mapped", "lane", m.Lane, "method", m.Method, "pattern", m.Pattern, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) removeMapping(w http.ResponseWriter, r *http.Request) {
	var req api.UnmapRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if msg := missing("method", req.Method, "pattern", req.Pattern); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	if err := s.o.Backend.Unmap(req); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("unmapped", "method", req.Method, "pattern", req.Pattern, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, api.UnmapResult{Method: req.Method, Pattern: req.Pattern, Removed: true})
}

func (s *Server) resize(w http.ResponseWriter, r *http.Request) {
	var req api.ResizeRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if msg := checkResize(req); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	name := r.PathValue("name")
	res, err := s.o.Backend.Resize(name, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Debug("resized", "lane", name, "min_workers", res.MinWorkers, "max_workers", res.MaxWorkers, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, res)
}

func checkResize(req api.ResizeRequest) string {
	switch {
	case req.MinWorkers == nil && req.MaxWorkers == nil:
		return "resize: give min_workers, max_workers or both"
	case req.MinWorkers != nil && *req.MinWorkers < 0:
		return fmt.Sprintf("resize: min_workers must not be negative, got %d", *req.MinWorkers)
	case req.MaxWorkers != nil && *req.MaxWorkers < 0:
		return fmt.Sprintf("resize: max_workers must not be negative, got %d", *req.MaxWorkers)
	case req.MinWorkers != nil && req.MaxWorkers != nil && *req.MinWorkers > *req.MaxWorkers:
		return fmt.Sprintf("resize: min_workers %d is above max_workers %d", *req.MinWorkers, *req.MaxWorkers)
	}
	return ""
}

func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	res, err := s.o.Backend.Drain(name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Debug("drain started", "lane", name, "workers", res.Workers, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	res, err := s.o.Backend.Reload()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Debug("reloaded", "config", res.Config, "changes", len(res.Changed), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.o.Metrics == nil {
		writeError(w, http.StatusNotFound, "metrics are not enabled")
		return
	}
	s.o.Metrics.ServeHTTP(w, r)
}

// fail answers a Backend error: its own code for an *api.Error, else 500
// (logged, since it is a bug or an outage rather than a refusal).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := api.Code(err)
	body := api.ErrorBody{Error: err.Error()}
	var ae *api.Error
	if errors.As(err, &ae) {
		body.Diagnostics = ae.Diagnostics
	}
	if code >= 500 {
		s.log.Error("admin call failed", "method", r.Method, "path", r.URL.Path, "error", err)
	} else {
		s.log.Debug("admin call refused", "method", r.Method, "path", r.URL.Path, "code", code, "error", err)
	}
	writeJSON(w, code, body)
}
