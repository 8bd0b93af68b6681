package fetchd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/lanes-dev/lanes/shared/config"
)

// Check is lanesd -check's (and startup's) look at theming: cache_dir must
// be usable, and the theme the app uses must be fetchable within
// fetch_timeout or have a copy in the cache younger than max_stale. Each
// finding is an error diagnostic, but for a cache_dir held by a running
// lanesd: that is what -check meets on a live host (nginx -t's place, before
// a reload), so it is a warning, and then so is a theme the origin does not
// give, as the holder's cache cannot be read to look for a copy. At startup
// the supervisor reports every finding as a warning and runs unthemed until
// the theme can be had. Check never moves a damaged cache aside: that is
// fetchd's job.
func Check(ctx context.Context, cfg *config.Config) hcl.Diagnostics {
	if cfg.App.Theme == "" {
		return nil
	}
	var th *config.Theme
	for i := range cfg.Themes {
		if cfg.Themes[i].Name == cfg.App.Theme {
			th = &cfg.Themes[i]
		}
	}
	if th == nil || cfg.Fetchd == nil {
		return nil // config reports an undeclared theme itself
	}
	set := *cfg.Fetchd
	var diags hcl.Diagnostics

	err := CheckCacheDir(set.CacheDir)
	inUse := errors.Is(err, ErrCacheInUse)
	switch {
	case inUse:
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "fetchd cache_dir in use",
			Detail: err.Error() + "; fine on the host where that lanesd runs, but its cache cannot be read meanwhile, " +
				"so the theme is checked at its origin only.",
		})
	case err != nil:
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Unusable fetchd cache_dir",
			Detail:   err.Error() + ".",
		})
	case cachedCopy(th, set):
		return diags
	}
	// No cache to read (in use, unusable) or no copy in it: the origin
	// must answer.
	origin := checkOrigin(ctx, th, set)
	if inUse {
		for _, d := range origin {
			d.Severity = hcl.DiagWarning // the running lanesd's cache may well hold a copy
		}
	}
	return append(diags, origin...)
}

// cachedCopy reports whether the cache holds a usable copy of th (same
// url, younger than max_stale). An unopenable cache holds none.
func cachedCopy(th *config.Theme, set config.Fetchd) bool {
	if _, err := os.Stat(set.CacheDir); err != nil {
		return false // -check creates nothing
	}
	c, err := OpenCache(set.CacheDir, CacheOptions{})
	if err != nil {
		return false
	}
	defer c.Close()
	e, ok, err := c.Load(th.Name)
	if err != nil || !ok || e.URL != th.URL {
		return false
	}
	return set.MaxStale <= 0 || time.Since(e.Fetched) <= set.MaxStale
}

// checkOrigin fetches th once within fetch_timeout and checks the page is a
// usable theme.
func checkOrigin(ctx context.Context, th *config.Theme, set config.Fetchd) hcl.Diagnostics {
	ctx, cancel := context.WithTimeout(ctx, set.FetchTimeout)
	defer cancel()
	r, err := newOrigin().fetch(ctx, th.URL, nil)
	if err == nil && r.Status == http.StatusOK {
		err = usable(r.Body, th.Rules)
	}
	if err == nil {
		return nil
	}
	subject := th.URLRange
	if subject.Filename == "" {
		subject = th.Range
	}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Theme not available",
		Detail: fmt.Sprintf("Theme %q can neither be fetched from %s (%v) nor be found in the cache in %s; the site would run unthemed.",
			th.Name, th.URL, err, set.CacheDir),
		Subject: &subject,
	}}
}
