package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/worker/theme"
)

// HeaderTheme is the debug header that tells how a themed app's HTML
// response was themed: fresh, stale or unthemed.
const HeaderTheme = "X-Theme"

// Option configures an App beyond its app block.
type Option func(*App) error

// WithTheme themes the app's HTML responses with theme t (the block the app
// block's theme names), asking svc (fetchd) for the page. svc may be nil
// when there is no fetchd: HTML then goes out unthemed, marked so.
func WithTheme(t config.Theme, svc shared.ThemeService, opt theme.Options) Option {
	return func(a *App) error {
		if a.themeName != t.Name {
			return fmt.Errorf("app: theme %q given, but the app block names %q", t.Name, a.themeName)
		}
		if opt.Log == nil {
			opt.Log = a.log
		}
		f, err := theme.New(t, svc, opt)
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		a.theme = f
		return nil
	}
}

// WithDebugHeaders adds X-Theme to themed responses (config debug_headers).
func WithDebugHeaders(on bool) Option {
	return func(a *App) error {
		a.debugHeaders = on
		return nil
	}
}

// WarmTheme gets the theme from fetchd before the first page needs it (see
// theme.Filter.Warm); without a theme it does nothing.
func (a *App) WarmTheme(ctx context.Context) {
	if a.theme != nil {
		a.theme.Warm(ctx)
	}
}

// applyTheme themes ctx's response, once the proxy or the demo has built
// it, when it is eligible (see package theme); every other response is left
// as it is, its body still streaming. It reports the filter time to the
// front in shared.HeaderFilterTime.
func (a *App) applyTheme(ctx *fasthttp.RequestCtx) {
	res := a.theme.Apply(context.Background(), ctx.IsHead(), &ctx.Response)
	if res.State == "" {
		return
	}
	// At least 1 µs: the front treats 0 as "no filter ran".
	us := max(res.Took.Microseconds(), 1)
	ctx.Response.Header.Set(shared.HeaderFilterTime, strconv.FormatInt(us, 10))
	if a.debugHeaders {
		ctx.Response.Header.Set(HeaderTheme, res.State)
	}
}

// Unread implements theme.Unreader: an HTML body that turns out too large
// to theme goes on streaming from the upstream, starting with what the
// filter read.
func (b *upstreamBody) Unread(prefix []byte, err error) {
	b.n -= int64(len(prefix)) // counted again as the client reads it
	rest := b.r
	if err != nil {
		rest = errReader{err}
	}
	b.r = io.MultiReader(bytes.NewReader(prefix), rest)
}

// errReader fails every Read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

var _ theme.Unreader = (*upstreamBody)(nil)
