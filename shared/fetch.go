package shared

import (
	"context"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// ThemeService is what fetchd offers workers over its control-plane socket
// (gRPC, like Control). Every call honours ctx's deadline.
type ThemeService interface {
	// Theme returns the named theme's current usable copy. have is the
	// Version the caller already holds: when it is still current the answer
	// carries no HTML (the caller keeps its parsed copy). A theme with no
	// usable copy (never fetched, or older than max_stale) answers State
	// ThemeUnthemed and no HTML, never an error; errors are for a fetchd
	// that cannot be reached or a theme name it does not know.
	Theme(ctx context.Context, name, have string) (ThemeDoc, error)
}

// ThemeDoc is one answer of ThemeService.Theme.
type ThemeDoc struct {
	Name    string    `json:"name"`
	Version string    `json:"version"` // changes whenever the HTML does; "" when unthemed
	State   string    `json:"state"`   // ThemeFresh, ThemeStale, ThemeUnthemed
	Fetched time.Time `json:"fetched"` // when the copy was fetched or last revalidated
	// FreshUntil, on a fresh answer, is when the copy turns stale
	// (Fetched plus min_refresh, or the origin's max-age): fetchd fetches
	// nothing before, so until then the version cannot change, and a
	// worker that holds it need not ask.
	FreshUntil time.Time `json:"fresh_until,omitzero"`
	HTML       []byte    `json:"html,omitempty"`
}

// Theme states, as X-Theme and the admin API show them.
const (
	ThemeFresh    = "fresh"
	ThemeStale    = "stale"
	ThemeUnthemed = "unthemed"
)

// StatusService is fetchd's report to the supervisor, served on the same
// socket as ThemeService.
type StatusService interface {
	Status(ctx context.Context) (FetchdStatus, error)
}

// FetchdStatus is what fetchd reports about itself. The supervisor adds what
// only it knows (enabled, state, restarts) to make an api.Fetchd.
type FetchdStatus struct {
	PID          int         `json:"pid"`
	RSS          int64       `json:"rss"` // bytes
	CacheEntries int         `json:"cache_entries"`
	CacheBytes   int64       `json:"cache_bytes"`
	Fetching     int         `json:"fetching"` // fetches running now
	Queued       int         `json:"queued"`   // fetch jobs waiting for a fetch goroutine
	LastError    string      `json:"last_error,omitempty"`
	Themes       []api.Theme `json:"themes"`
}

// FetchdService is both services fetchd offers; DialThemeService returns
// one, and RegisterThemeService serves one.
type FetchdService interface {
	ThemeService
	StatusService
}
