package theme

import (
	"bytes"
	"context"
	"errors"
	"time"

	"golang.org/x/net/html"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/themepage"
)

// parsed is one version of the theme page, parsed and with the rules' theme
// drops applied. It is never modified after adopt stores it: each request
// themes a clone.
type parsed struct {
	version string
	fetched time.Time
	root    *html.Node
	nodes   int       // nodes under root, root included: the clone's arena size
	size    int       // bytes of the page: a guess at what it adds to a themed body
	tmpl    *template // the streaming pass's chunks; nil: DOM path only
}

// theme returns the theme copy to use for one request and its state, or nil
// when the response goes unthemed. It asks fetchd with the version it
// holds; while fetchd is unreachable it keeps serving that copy as stale,
// and stops asking for RetryAfter so that requests do not each wait.
//
// While fetchd's last answer said the copy held here is fresh until some
// time, it is not asked again before then: it fetches nothing meanwhile,
// so the answer could only be the same. That saves a round trip to fetchd
// (most of the filter's time on a small page) on nearly every request.
func (f *Filter) theme(ctx context.Context) (*parsed, string) {
	cur := f.cur.Load()
	if f.svc == nil {
		return nil, shared.ThemeUnthemed
	}
	now := f.now()
	if fr := f.fresh.Load(); fr != nil && cur != nil && fr.version == cur.version && now.Before(fr.until) {
		return cur, shared.ThemeFresh
	}
	if now.UnixNano() < f.downUntil.Load() {
		return lastCopy(cur)
	}
	have := ""
	if cur != nil {
		have = cur.version
	}
	refused, _ := f.refused.Load().(string)
	if refused != "" {
		// Ask with the refused version: fetchd then sends no page until it
		// has another one, instead of 4 MiB per request to be refused again.
		have = refused
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
		f.noteFresh(doc)
		return cur, doc.State
	case doc.Version == refused:
		return lastCopy(cur)
	case len(doc.HTML) == 0:
		f.limited.Warn("fetchd named a theme version without its page; keeping the last copy",
			"have", have, "version", doc.Version)
		return lastCopy(cur)
	}
	p := f.adopt(doc)
	if r, _ := f.refused.Load().(string); r == doc.Version {
		return lastCopy(p)
	}
	if p != nil && p.version == doc.Version {
		f.noteFresh(doc)
	}
	return p, doc.State
}

// freshness is fetchd's word that version stays its fresh copy until
// until.
type freshness struct {
	version string
	until   time.Time
}

// noteFresh keeps doc's fresh window, or forgets the last one when doc is
// not fresh.
func (f *Filter) noteFresh(doc shared.ThemeDoc) {
	if doc.State != shared.ThemeFresh || doc.FreshUntil.IsZero() {
		f.fresh.Store(nil)
		return
	}
	f.fresh.Store(&freshness{version: doc.Version, until: doc.FreshUntil})
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

// refuse records version as refused, logs why once, and returns the copy
// still in use. adoptMu is held.
func (f *Filter) refuse(version string, err error) *parsed {
	f.refused.Store(version)
	f.refusals.Add(1)
	cur := f.cur.Load()
	have := ""
	if cur != nil {
		have = cur.version
	}
	f.log.Error("theme page refused; keeping the last copy, or unthemed without one",
		"version", version, "in_use", have, "error", err)
	return cur
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
	if refused, _ := f.refused.Load().(string); refused == doc.Version {
		return f.cur.Load()
	}
	// Checked before a DOM is built: the tokenizer's count costs a few
	// hundred KB whatever the page, the DOM of 400,000 elements hundreds
	// of MB, and a clone of it per request. fetchd refuses such pages; a
	// copy cached before it did, or by an older fetchd, still gets here.
	if _, err := themepage.Scan(doc.HTML, f.limits); err != nil {
		return f.refuse(doc.Version, err)
	}
	root, err := html.Parse(bytes.NewReader(doc.HTML))
	if err != nil { // nested past 512, or a reader error
		return f.refuse(doc.Version, err)
	}
	if err := themepage.CheckNodes(countNodes(root), f.limits); err != nil {
		return f.refuse(doc.Version, err)
	}
	f.parses.Add(1)
	for _, miss := range f.prepare(root) {
		f.log.Warn("theme selector matches nothing in the theme page",
			"version", doc.Version, "rule", miss)
	}
	p := &parsed{version: doc.Version, fetched: doc.Fetched, root: root, nodes: countNodes(root), size: len(doc.HTML)}
	if f.plan.reason != "" {
		f.log.Info("theme rules take the DOM path on every page", "reason", f.plan.reason)
	} else if tp, why := compileTheme(root, f.rules); tp == nil {
		f.log.Info("theme version takes the DOM path on every page", "version", doc.Version, "reason", why)
	} else {
		p.tmpl = tp
	}
	f.cur.Store(p)
	f.log.Debug("theme version adopted", "version", doc.Version, "bytes", len(doc.HTML), "nodes", p.nodes)
	return p
}
