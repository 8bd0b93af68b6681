package config

import (
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// What a child gets through the wire types is what the config said, less
// the source ranges, which only diagnostics use.
func TestWireRoundTrip(t *testing.T) {
	app := App{Upstream: "http://127.0.0.1:9000", UpstreamTimeout: time.Second, Theme: "main", Demo: true, UnderscoresInHeaders: true}
	if got := AppFromWire(app.Wire()); got != app {
		t.Errorf("app: %+v, want %+v", got, app)
	}
	f := Fetchd{CacheDir: "/c", Workers: 3, FetchTimeout: time.Second, MinRefresh: 2 * time.Second, StaleWait: 3 * time.Millisecond, MaxStale: time.Hour}
	if got := FetchdFromWire(f.Wire()); got != f {
		t.Errorf("fetchd: %+v, want %+v", got, f)
	}
	th := Theme{Name: "main", URL: "http://theme.example/", Rules: []ThemeRule{{Kind: "replace", Theme: "#c", Content: "body"}},
		Range: hcl.Range{Filename: "x.hcl"}, URLRange: hcl.Range{Filename: "x.hcl"}}
	want := th
	want.Range, want.URLRange = hcl.Range{}, hcl.Range{}
	if got := ThemeFromWire(th.Wire()); !reflect.DeepEqual(got, want) {
		t.Errorf("theme: %+v, want %+v", got, want)
	}
}
