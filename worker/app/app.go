// Package app is the built-in worker handler: a streaming reverse proxy to the
// configured upstream, or the demo site. worker.Serve runs it on the worker's
// data-plane socket; this package knows nothing about sockets or processes.
package app

import (
	"errors"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/worker/theme"
)

// App is the built-in worker handler for one app block.
type App struct {
	proxy *proxy // nil when serving the demo site
	demo  *demo  // nil when proxying

	themeName    string        // the app block's theme, "" for none
	theme        *theme.Filter // nil: nothing is themed
	debugHeaders bool          // X-Theme on themed responses
	log          hclog.Logger

	// done is closed by Close; it releases demo requests that would
	// otherwise block forever (/demo/hang) or for long (/demo/sleep).
	done      chan struct{}
	closeOnce sync.Once
}

// New returns the built-in worker handler for cfg: a reverse proxy to
// cfg.Upstream, or the demo site when cfg.Demo. The returned Close releases
// idle upstream connections.
//
// cfg.Theme takes effect with the WithTheme option, which brings the theme
// block and fetchd; without it responses pass through unthemed.
func New(cfg config.App, log hclog.Logger, opts ...Option) (*App, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("app")
	a := &App{done: make(chan struct{}), themeName: cfg.Theme, log: log}
	switch {
	case cfg.Demo && cfg.Upstream != "":
		return nil, errors.New("app: set only one of upstream and demo")
	case cfg.Demo:
		a.demo = &demo{log: log.Named("demo"), done: a.done}
	case cfg.Upstream == "":
		return nil, errors.New("app: no upstream and demo not set")
	default:
		timeout := cfg.UpstreamTimeout
		if timeout <= 0 {
			timeout = config.DefaultUpstreamTimeout
		}
		p, err := newProxy(cfg.Upstream, timeout, cfg.UnderscoresInHeaders, log.Named("proxy"))
		if err != nil {
			return nil, err
		}
		a.proxy = p
	}
	for _, o := range opts {
		if err := o(a); err != nil {
			return nil, err
		}
	}
	if a.demo != nil {
		a.demo.themed = a.theme != nil
	}
	if a.themeName != "" && a.theme == nil {
		log.Warn("app names a theme but the worker has no theme filter; serving unthemed", "theme", a.themeName)
	}
	return a, nil
}

// Handler serves one request. It is a fasthttp.RequestHandler.
func (a *App) Handler(ctx *fasthttp.RequestCtx) {
	if a.proxy != nil {
		a.proxy.serve(ctx)
	} else {
		a.demo.serve(ctx)
	}
	if a.theme != nil {
		a.applyTheme(ctx)
	}
}

// Close releases idle upstream connections and unblocks demo requests that
// are waiting. Responses still streaming keep their connections until they
// finish. Close is safe to call more than once.
func (a *App) Close() error {
	a.closeOnce.Do(func() {
		close(a.done)
		if a.proxy != nil {
			a.proxy.close()
		}
		if a.theme != nil {
			a.theme.Flush()
		}
	})
	return nil
}
