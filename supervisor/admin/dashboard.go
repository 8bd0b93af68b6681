package admin

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"strings"
)

// The dashboard is one self-contained page: HTML, CSS and scripts inlined,
// no external assets and no build step. It is a shell with no data and no
// secret — the script fetches the API every two seconds, asking for the
// token (kept in sessionStorage) when the API answers 401. Its script is
// three files: page.js (the tables, the refresh loop, the login),
// charts.js (the lanes' samples and their charts) and actions.js (drain,
// resize, unmap); the last two only define functions that page.js calls.
//
// The charts are uPlot (https://github.com/leeoniya/uPlot), MIT licence in
// dashboard/uPlot.LICENSE, vendored unchanged from the npm package
// uplot@1.6.32 (dist/uPlot.iife.min.js and dist/uPlot.min.css; to update:
// npm pack uplot@VERSION, copy those two files and the LICENSE, and change
// the version here). It is inlined as a script of its own, so the page
// still works without charts if it fails.
var (
	//go:embed dashboard/page.html
	pageHTML string
	//go:embed dashboard/page.css
	pageCSS string
	//go:embed dashboard/page.js
	pageJS string
	//go:embed dashboard/charts.js
	chartsJS string
	//go:embed dashboard/actions.js
	actionsJS string
	//go:embed dashboard/uPlot.iife.min.js
	chartJS string
	//go:embed dashboard/uPlot.min.css
	chartCSS string

	dashboardPage = strings.NewReplacer("{{STYLE}}", pageCSS, "{{SCRIPT}}", pageJS, "{{CHARTS}}", chartsJS,
		"{{ACTIONS}}", actionsJS, "{{CHART_STYLE}}", chartCSS, "{{CHART_SCRIPT}}", chartJS).Replace(pageHTML)
	// dashboardCSP allows exactly the inlined scripts and styles (by hash)
	// and calls to this listener: an injected tag would not run.
	dashboardCSP = "default-src 'none'; script-src '" + cspHash(chartJS) + "' '" + cspHash(chartsJS) + "' '" + cspHash(actionsJS) +
		"' '" + cspHash(pageJS) + "'; style-src '" + cspHash(chartCSS) + "' '" + cspHash(pageCSS) +
		"'; connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write([]byte(dashboardPage))
}
