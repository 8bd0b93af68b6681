package fetchd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/themepage"
)

// hugePage is the adversarial round's theme (issue 15, item 5): 400,000
// elements in 3.2 MB, under the 4 MiB cap, with the rules' selector.
func hugePage() string {
	return `<html><head><title>Huge</title></head><body><div id="content">placeholder</div>` +
		strings.Repeat("<i>x</i>", 400_000) + `</body></html>`
}

// A page past the theme limits is refused before it is parsed: the last
// good copy stays, the refusal is counted and says why, and fetchd's
// memory does not grow with what the page describes.
func TestHugeThemeRefused(t *testing.T) {
	o := newTestOrigin(t)
	set := settings(o.URL)
	set.Fetchd.MinRefresh = 0
	set.Fetchd.StaleWait = 5 * time.Second // each ask waits for its refresh
	s := start(t, t.TempDir(), set, func(o *Options) { o.BackoffBase = time.Millisecond })
	good := ask(t, s)
	if good.Version == "" {
		t.Fatalf("no first copy: %+v", good)
	}

	page := hugePage()
	o.set(func(o *testOrigin) { o.page = page })
	time.Sleep(5 * time.Millisecond) // past any backoff
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	d := ask(t, s)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("fetching and refusing a %d-byte page of 400,000 elements allocated %.1f MB", len(page), float64(alloc)/(1<<20))

	if d.Version != good.Version || string(d.HTML) != goodPage {
		t.Errorf("served version %q, want the last good %q", d.Version, good.Version)
	}
	if st := themeStats(s); st["rejected"] != 1 {
		t.Errorf("counters %v, want 1 rejected", st)
	}
	if le := s.Themes()[0].LastError; !strings.Contains(le, "more than 20000 elements") {
		t.Errorf("last error %q, want the element limit named", le)
	}
	// The body read (3.2 MB, grown by ReadAll) and the scan; parsing the
	// page would allocate over 100 MB.
	if alloc > 32<<20 {
		t.Errorf("refusing the page allocated %d MB", alloc>>20)
	}
}

func TestUsableLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		page string
	}{
		{"elements", hugePage()},
		{"depth", `<html><body><div id="content">x</div>` + strings.Repeat("<div>", 300) + `</body></html>`},
		// Each <p>x</p> reopens the 200 formatting elements </p> closed:
		// few tags, a large tree once parsed.
		{"nodes added by the parser", `<html><body><div id="content">x</div><p>` + formatting(200) + `</p>` + strings.Repeat("<p>x</p>", 1000) + `</body></html>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := usable([]byte(tc.page), rules)
			if !errors.Is(err, errRejected) || !errors.Is(err, themepage.ErrTooLarge) {
				t.Fatalf("err = %v, want a rejection for size", err)
			}
			t.Log(err)
		})
	}
}

func formatting(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(`<b class="c` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + `">`)
	}
	return b.String()
}

// A theme URL redirects within its own origin only, at most 5 times.
func TestThemeRedirects(t *testing.T) {
	other := newTestOrigin(t)
	var hops atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/", http.StatusFound)
	})
	mux.HandleFunc("/near", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/theme", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/theme", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, goodPage)
	})
	mux.HandleFunc("/loop/", func(w http.ResponseWriter, r *http.Request) {
		n := hops.Add(1)
		http.Redirect(w, r, fmt.Sprintf("/loop/%d", n), http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		path, want string
	}{
		{"/near", ""},
		{"/away", "to another origin"},
		{"/loop/0", "more than 5 redirects"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r, err := newOrigin().fetch(context.Background(), srv.URL+tc.path, nil)
			if tc.want == "" {
				if err != nil || r.Status != http.StatusOK {
					t.Fatalf("status %d, err %v", r.Status, err)
				}
				return
			}
			if !errors.Is(err, errRejected) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a rejection naming %q", err, tc.want)
			}
		})
	}
	if n := other.hits.Load(); n != 0 {
		t.Errorf("the other origin was asked %d times", n)
	}
}
