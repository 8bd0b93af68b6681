package theme

import (
	"bytes"
	"context"
	"errors"
	"time"

	"golang.org/x/net/html"

	"github.com/lanes-dev/lanes/shared"
)

// parsed is one version of the theme page, parsed and with the rules' theme
// drops applied. It is never modified after adopt stores it: each request
// themes a clone.
type parsed struct {
	version string
	fetched time.Time
	root    *html.Node
	nodes   int // nodes under root, root included: the clone's arena size
	size    int // bytes of the page: a guess at what it adds to a themed body
}

// theme returns the theme copy to use for one request and its state, or nil
// when the response goes unthemed. It asks fetchd with the version it
// holds; while fetchd is unreachable it keeps serving that copy as stale,
// and stops asking for RetryAfter so that requests do not each wait.
func (f *Filter) theme(ctx context.Context) (*parsed, string) {
	cur := f.cur.Load()
	if f.svc == nil {
		return nil, shared.ThemeUnthemed
	}
	if f.now().UnixNano() < f.downUntil.Load() {
		return lastCopy(cur)
	}
	have := ""
	if cur != nil {
		have = cur.version
	}
	actx, cancel := context.WithTimeout(ctx, f.askTimeout)
	doc, err := f.svc.Theme(actx, f.name, have)
	cancel()
	if err != nil {
		f.downUntil.Store(f.now().Add(f.retryAfter).UnixNano())
		if f.down.CompareAndSwap(false, true) {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				// fetchd answers within stale_wait unless it has no copy and
				// its origin is slow: a miss, not a fetchd gone.
				f.log.Info("no theme from fetchd within ask_timeout (its origin is slow on a miss?); serving the last theme copy, or unthemed without one",
					"have", have, "ask_timeout", f.askTimeout.String(), "retry_after", f.retryAfter.String())
			} else {
				f.log.Warn("fetchd unreachable; serving the last theme copy, or unthemed without one",
					"have", have, "retry_after", f.retryAfter.String(), "error", err)
			}
		}
		return lastCopy(cur)
	}
	if f.down.CompareAndSwap(true, false) {
		f.log.Info("fetchd answers again")
	}
	switch {
	case doc.State == shared.ThemeUnthemed || doc.Version == "":
		// fetchd has no usable copy (never fetched, or past max_stale):
		// its word goes, even over a copy held here.
		return nil, shared.ThemeUnthemed
	case cur != nil && doc.Version == cur.version:
		return cur, doc.State
	case len(doc.HTML) == 0:
		f.log.Warn("fetchd named a theme version without its page; keeping the last copy",
			"have", have, "version", doc.Version)
		return lastCopy(cur)
	}
	return f.adopt(doc), doc.State
}

// Warm asks fetchd for the theme once and parses it, before any page asks:
// a worker then has a copy to serve if fetchd goes away before its first
// HTML response (it would serve unthemed without one), and its first page
// does not pay the parse. A failure is left for that page to find.
func (f *Filter) Warm(ctx context.Context) {
	if f.svc == nil {
		return
	}
	actx, cancel := context.WithTimeout(ctx, f.askTimeout)
	doc, err := f.svc.Theme(actx, f.name, "")
	cancel()
	if err != nil || doc.State == shared.ThemeUnthemed || doc.Version == "" || len(doc.HTML) == 0 {
		return
	}
	f.adopt(doc)
}

// lastCopy is the answer without fetchd.
func lastCopy(cur *parsed) (*parsed, string) {
	if cur == nil {
		return nil, shared.ThemeUnthemed
	}
	return cur, shared.ThemeStale
}

// adopt parses doc's page, once per version however many requests bring it
// at once, and makes it the current copy.
func (f *Filter) adopt(doc shared.ThemeDoc) *parsed {
	f.adoptMu.Lock()
	defer f.adoptMu.Unlock()
	if cur := f.cur.Load(); cur != nil {
		if cur.version == doc.Version {
			return cur // another request parsed it meanwhile
		}
		if doc.Fetched.Before(cur.fetched) {
			return cur // an older answer that lost a race with a newer one
		}
	}
	root, err := html.Parse(bytes.NewReader(doc.HTML))
	if err != nil { // only reader errors, which bytes.Reader has none of
		f.log.Error("theme page does not parse", "version", doc.Version, "error", err)
		return f.cur.Load()
	}
	f.parses.Add(1)
	for _, miss := range f.prepare(root) {
		f.log.Warn("theme selector matches nothing in the theme page",
			"version", doc.Version, "rule", miss)
	}
	p := &parsed{version: doc.Version, fetched: doc.Fetched, root: root, nodes: countNodes(root), size: len(doc.HTML)}
	f.cur.Store(p)
	f.log.Debug("theme version adopted", "version", doc.Version, "bytes", len(doc.HTML), "nodes", p.nodes)
	return p
}
