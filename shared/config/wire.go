package config

import "github.com/lanes-dev/lanes/shared"

// The children of lanesd get the parts of a config they need as shared's
// plain wire types, so that package shared (which every custom worker
// links) need not import this one, nor HCL. These convert both ways.

// Wire returns a as the built-in worker gets it (shared.WorkerEnv.App).
func (a App) Wire() shared.AppWire {
	return shared.AppWire{
		Upstream:             a.Upstream,
		UpstreamTimeout:      a.UpstreamTimeout,
		Theme:                a.Theme,
		Demo:                 a.Demo,
		UnderscoresInHeaders: a.UnderscoresInHeaders,
	}
}

// AppFromWire is the inverse of App.Wire.
func AppFromWire(w shared.AppWire) App {
	return App{
		Upstream:             w.Upstream,
		UpstreamTimeout:      w.UpstreamTimeout,
		Theme:                w.Theme,
		Demo:                 w.Demo,
		UnderscoresInHeaders: w.UnderscoresInHeaders,
	}
}

// Wire returns t as fetchd and the built-in worker get it; its source
// ranges stay here.
func (t Theme) Wire() shared.ThemeWire {
	w := shared.ThemeWire{Name: t.Name, URL: t.URL, Rules: make([]shared.ThemeRuleWire, len(t.Rules))}
	for i, r := range t.Rules {
		w.Rules[i] = shared.ThemeRuleWire{Kind: r.Kind, Theme: r.Theme, Content: r.Content}
	}
	return w
}

// ThemeFromWire is the inverse of Theme.Wire, without source ranges.
func ThemeFromWire(w shared.ThemeWire) Theme {
	t := Theme{Name: w.Name, URL: w.URL, Rules: make([]ThemeRule, len(w.Rules))}
	for i, r := range w.Rules {
		t.Rules[i] = ThemeRule{Kind: r.Kind, Theme: r.Theme, Content: r.Content}
	}
	return t
}

// Wire returns f as fetchd gets it (shared.FetchdSettings.Fetchd).
func (f Fetchd) Wire() shared.FetchdWire {
	return shared.FetchdWire{
		CacheDir:     f.CacheDir,
		Workers:      f.Workers,
		FetchTimeout: f.FetchTimeout,
		MinRefresh:   f.MinRefresh,
		StaleWait:    f.StaleWait,
		MaxStale:     f.MaxStale,
	}
}

// FetchdFromWire is the inverse of Fetchd.Wire.
func FetchdFromWire(w shared.FetchdWire) Fetchd {
	return Fetchd{
		CacheDir:     w.CacheDir,
		Workers:      w.Workers,
		FetchTimeout: w.FetchTimeout,
		MinRefresh:   w.MinRefresh,
		StaleWait:    w.StaleWait,
		MaxStale:     w.MaxStale,
	}
}
