package fetchd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/andybalholm/cascadia"
	"golang.org/x/net/html"

	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/shared/themepage"
)

// MaxThemeSize bounds a theme page; a larger body is rejected.
const MaxThemeSize = 4 << 20

// errRejected marks a page the origin delivered that is not a usable theme:
// the last good copy stays.
var errRejected = errors.New("not a usable theme")

// response is what an origin answered: a new page (Status 200) or "not
// modified" (Status 304) for the copy asked about.
type response struct {
	Status       int
	Body         []byte
	ETag         string
	LastModified string
	MaxAge       time.Duration
}

// origin fetches theme pages. Fetching is not a hot path: net/http, one
// client, bounded bodies.
type origin struct {
	client *http.Client
}

func newOrigin() *origin {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2
	tr.IdleConnTimeout = 30 * time.Second
	return &origin{client: &http.Client{Transport: tr, CheckRedirect: sameOrigin}}
}

// maxRedirects bounds a theme fetch's redirects.
const maxRedirects = 5

// sameOrigin lets a theme URL redirect only within its own origin (scheme,
// host and port), at most maxRedirects times: a redirect elsewhere could
// point fetchd at lanes' own front, at an internal service, or at a host
// the operator never chose as a theme origin.
func sameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("%w: more than %d redirects", errRejected, maxRedirects)
	}
	first := via[0].URL
	if !strings.EqualFold(req.URL.Scheme, first.Scheme) || !strings.EqualFold(req.URL.Host, first.Host) {
		return fmt.Errorf("%w: redirect from %s to another origin (%s://%s) refused: a theme may only redirect within its own origin",
			errRejected, first.Redacted(), req.URL.Scheme, req.URL.Host)
	}
	return nil
}

// fetch asks u for its page, conditionally on prev (nil: no copy). ctx
// bounds the whole fetch, body included. An error wrapping errRejected is a
// page that arrived but cannot be a theme; any other error is a failure.
func (o *origin) fetch(ctx context.Context, u string, prev *Entry) (response, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return response{}, err
	}
	if pu.Scheme == "file" {
		return fetchFile(pu, prev)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Accept", "text/html")
	req.Header.Set("User-Agent", "lanes-fetchd")
	if prev != nil {
		if prev.ETag != "" {
			req.Header.Set("If-None-Match", prev.ETag)
		}
		if prev.LastModified != "" {
			req.Header.Set("If-Modified-Since", prev.LastModified)
		}
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	r := response{
		Status:       resp.StatusCode,
		ETag:         resp.Header.Get("ETag"),
		LastModified: resp.Header.Get("Last-Modified"),
		MaxAge:       maxAge(resp.Header.Values("Cache-Control")),
	}
	switch {
	case resp.StatusCode == http.StatusNotModified && prev != nil:
		return r, nil
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
		return response{}, fmt.Errorf("origin answered %s", resp.Status)
	case resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusPartialContent:
		return response{}, fmt.Errorf("%w: origin answered %s", errRejected, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxThemeSize+1))
	if err != nil {
		return response{}, fmt.Errorf("read body: %w", err)
	}
	if len(body) > MaxThemeSize {
		return response{}, fmt.Errorf("%w: page is larger than %d bytes", errRejected, MaxThemeSize)
	}
	ct := resp.Header.Get("Content-Type")
	if err := checkHTMLType(ct, body); err != nil {
		return response{}, err
	}
	if body, err = toUTF8(body, ct); err != nil {
		return response{}, err
	}
	r.Status, r.Body = http.StatusOK, body
	return r, nil
}

// fetchFile reads a file:// theme. Its modification time stands in for
// Last-Modified, so an unchanged file revalidates like a 304.
func fetchFile(u *url.URL, prev *Entry) (response, error) {
	f, err := os.Open(u.Path)
	if err != nil {
		return response{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return response{}, err
	}
	if fi.IsDir() {
		return response{}, fmt.Errorf("%s is a directory", u.Path)
	}
	mod := fi.ModTime().UTC().Format(time.RFC3339Nano)
	if prev != nil && prev.LastModified == mod {
		return response{Status: http.StatusNotModified, LastModified: mod}, nil
	}
	body, err := io.ReadAll(io.LimitReader(f, MaxThemeSize+1))
	if err != nil {
		return response{}, err
	}
	if len(body) > MaxThemeSize {
		return response{}, fmt.Errorf("%w: page is larger than %d bytes", errRejected, MaxThemeSize)
	}
	ct := mime.TypeByExtension(strings.ToLower(pathExt(u.Path)))
	if err := checkHTMLType(ct, body); err != nil {
		return response{}, err
	}
	if body, err = toUTF8(body, ct); err != nil {
		return response{}, err
	}
	return response{Status: http.StatusOK, Body: body, LastModified: mod}, nil
}

func pathExt(p string) string {
	if i := strings.LastIndexByte(p, '.'); i >= 0 && !strings.Contains(p[i:], "/") {
		return p[i:]
	}
	return ""
}

// checkHTMLType accepts text/html (or XHTML); without a declared type the
// body is sniffed.
func checkHTMLType(ct string, body []byte) error {
	if ct == "" {
		ct = http.DetectContentType(body)
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "text/html" && mt != "application/xhtml+xml") {
		return fmt.Errorf("%w: content type %q is not text/html", errRejected, ct)
	}
	return nil
}

// toUTF8 returns a theme page as UTF-8, whatever charset it declares: the
// cache, the version and the workers' parser then see one encoding (the
// worker makes the page's <meta charset> say utf-8). The size cap holds for
// the decoded page too: it is what the workers hold.
func toUTF8(body []byte, contentType string) ([]byte, error) {
	out, name, err := themepage.ToUTF8(body, contentType)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errRejected, err)
	}
	if len(out) > MaxThemeSize {
		return nil, fmt.Errorf("%w: page is larger than %d bytes once decoded from %s", errRejected, MaxThemeSize, name)
	}
	return out, nil
}

// maxAge returns Cache-Control's max-age, or 0.
func maxAge(cc []string) time.Duration {
	for _, v := range cc {
		for d := range strings.SplitSeq(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(d), "=")
			if !ok || !strings.EqualFold(k, "max-age") {
				continue
			}
			if n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && n > 0 {
				return time.Duration(min(n, 1<<31)) * time.Second
			}
		}
	}
	return 0
}

// usable reports why page is not a usable theme for rules, or nil. Every
// replace and append rule's theme selector must match: it is where content
// goes, and a page without it (an origin's error or maintenance page) would
// lose the content. A drop rule's selector need not match (nothing to drop
// is fine), and a title rule needs nothing: the themer adds a <title> to the
// head when the theme has none.
//
// A page past themepage.Default (elements, attributes, depth) is refused
// before it is parsed: every worker would hold it and clone it per request.
func usable(page []byte, rules []config.ThemeRule) error {
	if _, err := themepage.Scan(page, themepage.Default); err != nil {
		return fmt.Errorf("%w: %w", errRejected, err)
	}
	root, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		return fmt.Errorf("%w: parse: %v", errRejected, err)
	}
	if err := themepage.CheckNodes(countNodes(root), themepage.Default); err != nil {
		return fmt.Errorf("%w: %w", errRejected, err)
	}
	doc := goquery.NewDocumentFromNode(root)
	for _, r := range rules {
		if r.Kind != "replace" && r.Kind != "append" {
			continue
		}
		sel, err := cascadia.Compile(r.Theme)
		if err != nil {
			return fmt.Errorf("%w: rule %q: invalid selector %q: %v", errRejected, r.Kind, r.Theme, err)
		}
		if doc.FindMatcher(sel).Length() == 0 {
			return fmt.Errorf("%w: rule %q: selector %q matches nothing", errRejected, r.Kind, r.Theme)
		}
	}
	return nil
}

// countNodes counts n and its descendants.
func countNodes(n *html.Node) int {
	k := 1
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		k += countNodes(c)
	}
	return k
}

// version names an HTML body: it changes whenever the body does.
func version(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:12])
}
