// Package admin is the supervisor's admin listener (the monitor lane): the
// JSON API and dashboard, served by the front process itself and never
// through a worker lane, so it answers when every lane is saturated.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"html/template"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/logging"
)

// Options configure the admin server.
type Options struct {
	// Token, when set, is required as "Authorization: Bearer TOKEN" on
	// every call.
	Token string
	// Status returns the /api/status document.
	Status func() any
	Log    hclog.Logger
}

// New returns the admin server; the caller serves it on its listener.
func New(o Options) *fasthttp.Server {
	h := &handler{o: o}
	return &fasthttp.Server{
		Handler:               h.serve,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           60 * time.Second,
		MaxRequestBodySize:    1 << 20,
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
		Logger:                logging.Std(o.Log),
	}
}

type handler struct{ o Options }

func (h *handler) serve(ctx *fasthttp.RequestCtx) {
	defer func() {
		if r := recover(); r != nil {
			h.o.Log.Error("admin handler panic", "path", string(ctx.Path()), "panic", fmt.Sprint(r))
			apiError(ctx, fasthttp.StatusInternalServerError, "internal error")
		}
	}()
	if !h.authorized(ctx) {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="lanes"`)
		apiError(ctx, fasthttp.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	switch path := string(ctx.Path()); path {
	case "/api/status":
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET")
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, h.o.Status())
	case "/":
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET")
			return
		}
		h.dashboard(ctx)
	default:
		apiError(ctx, fasthttp.StatusNotFound, "no such admin call: "+path)
	}
}

func (h *handler) authorized(ctx *fasthttp.RequestCtx) bool {
	if h.o.Token == "" {
		return true
	}
	const prefix = "Bearer "
	got := ctx.Request.Header.Peek("Authorization")
	if len(got) <= len(prefix) || string(got[:len(prefix)]) != prefix {
		return false
	}
	return subtle.ConstantTimeCompare(got[len(prefix):], []byte(h.o.Token)) == 1
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	apiError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed; use "+allow)
}

// apiError is the one error shape of the admin API: {"error": "..."}.
func apiError(ctx *fasthttp.RequestCtx, code int, msg string) {
	writeJSON(ctx, code, map[string]string{"error": msg})
}

func writeJSON(ctx *fasthttp.RequestCtx, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code, b = fasthttp.StatusInternalServerError, []byte(`{"error":"encoding status"}`)
	}
	ctx.SetStatusCode(code)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(append(b, '\n'))
}

// The dashboard is a plain page that renders /api/status itself and
// refreshes every two seconds; it carries the token it was loaded with.
var dashboardPage = template.Must(template.New("dash").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>lanes</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.bad{color:#b00;font-weight:bold}
</style></head><body>
<h1>lanes</h1><div id="s">loading…</div>
<script>
const tok = {{.}};
async function tick(){
  const r = await fetch('/api/status',{headers: tok ? {Authorization:'Bearer '+tok} : {}});
  const s = await r.json();
  let h = '<p>pid '+s.pid+' · up '+Math.round(s.uptime_s)+'s · '+s.listen+'</p>';
  h += '<table><tr><th>lane</th><th>workers</th><th>inflight</th><th>queued</th><th>served</th><th>rejected</th><th>timeouts</th><th>killed</th><th>respawns</th><th>p50 ms</th><th>p99 ms</th><th>state</th></tr>';
  for (const l of s.lanes){
    const ready = l.workers.filter(w=>w.state==='ready').length;
    h += '<tr><td>'+l.name+'</td><td>'+ready+'/'+l.min_workers+'</td><td>'+l.inflight+'</td><td>'+l.queued+'</td><td>'+l.served+'</td><td>'+l.rejected+'</td><td>'+l.timeouts+'</td><td>'+l.killed+'</td><td>'+l.respawns+'</td><td>'+l.latency_ms.p50+'</td><td>'+l.latency_ms.p99+'</td><td'+(l.crash_loop?' class="bad">crash loop: '+(l.last_exit||''):'>ok')+'</td></tr>';
  }
  h += '</table>';
  for (const l of s.lanes){
    h += '<h3>'+l.name+'</h3><table><tr><th>pid</th><th>state</th><th>inflight</th><th>served</th><th>rss MB</th><th>uptime s</th></tr>';
    for (const w of l.workers) h += '<tr><td>'+w.pid+'</td><td>'+w.state+'</td><td>'+w.inflight+'</td><td>'+w.served+'</td><td>'+(w.rss/1048576).toFixed(1)+'</td><td>'+Math.round(w.uptime_s)+'</td></tr>';
    h += '</table>';
  }
  document.getElementById('s').innerHTML = h;
}
tick(); setInterval(tick, 2000);
</script></body></html>
`))

func (h *handler) dashboard(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	if err := dashboardPage.Execute(ctx, h.o.Token); err != nil {
		h.o.Log.Warn("dashboard", "error", err)
	}
}
