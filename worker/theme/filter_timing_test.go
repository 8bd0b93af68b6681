package theme

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/lanes-dev/lanes/shared"
)

// page50K is a content page of about 50 KB: an article with the usual
// head, navigation, tables, code and lists.
func page50K() string {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Lanes and queues: a field report</title>
<link rel="stylesheet" href="/static/article.css"><link rel="canonical" href="https://example.com/blog/lanes">
<style>.note{border-left:4px solid #2f6fde;padding-left:1rem}</style></head>
<body><nav class="app-nav"><a href="/">Home</a> <a href="/blog">Blog</a></nav>
<div id="content"><article><h1>Lanes and queues: a field report</h1>
`)
	for i := 0; b.Len() < 50_000; i++ {
		fmt.Fprintf(&b, `<h2 id="s%d">Section %d: what the numbers say</h2>
<p>At one second of queueing a ten millisecond request becomes a hundred times slower; users press reload and the
queue grows. In section %d we look at <a href="/blog/lanes#s%d">how lanes</a> keep <em>fast</em> requests apart
from <strong>slow</strong> ones, and what it costs: one process per worker, a unix socket per process.</p>
<ul><li>p50 before: %d ms</li><li>p50 after: %d ms</li><li>workers: %d</li></ul>
<table><thead><tr><th>lane</th><th>queued</th><th>served</th></tr></thead>
<tbody><tr><td>default</td><td>%d</td><td>%d</td></tr><tr><td>slow</td><td>%d</td><td>%d</td></tr></tbody></table>
<pre><code>lane "slow" {
  min_workers = %d
  request_timeout = "300s"
}</code></pre>
<p class="note">Note %d: the figures are from a two-core machine &amp; a busy day.</p>
`, i, i, i, i, 900+i, 12+i%5, 4+i%3, i*3, i*1000, i, i*10, 5+i%4, i)
	}
	b.WriteString(`</article></div><footer class="app-footer">app footer</footer></body></html>`)
	return b.String()
}

func benchTheme(b *testing.B) string {
	t, err := os.ReadFile("testdata/theme.html")
	if err != nil {
		b.Fatal(err)
	}
	return string(t)
}

// BenchmarkApply50K themes a 50 KB page in a 20 KB theme (testdata) with
// the design's four rules; fetchd answers at once, as with its copy in
// memory. It reports p50 and p99 of the per-request time besides ns/op.
//
//	go test -run '^$' -bench Apply50K -benchmem ./worker/theme/
func BenchmarkApply50K(b *testing.B) {
	f, fd := newFilter(b, testRules, Options{})
	fd.set("v1", shared.ThemeFresh, benchTheme(b))
	page := page50K()
	ctx := context.Background()
	var took []time.Duration
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		r := htmlResp(page)
		start := time.Now()
		res := f.Apply(ctx, false, r)
		took = append(took, time.Since(start))
		if res.State != shared.ThemeFresh {
			b.Fatalf("state %q", res.State)
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns")
	if f.Parses() != 1 {
		b.Errorf("%d theme parses", f.Parses())
	}
}

// BenchmarkThemeCopy compares the two ways a request can get its own
// theme tree to modify: cloning the parsed tree (what the filter does) or
// parsing the theme page again.
func BenchmarkThemeCopy(b *testing.B) {
	src := []byte(benchTheme(b))
	root, err := html.Parse(bytes.NewReader(src))
	if err != nil {
		b.Fatal(err)
	}
	n := countNodes(root)
	b.Run("clone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			clone(root, n)
		}
	})
	b.Run("reparse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := html.Parse(bytes.NewReader(src)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPaths50K themes the 50 KB page in the 20 KB theme by the DOM
// path and by the streaming pass, alternating in batches within one run so
// that both see the same machine, and reports each path's median time and
// mean heap allocations per page, and the ratio of the medians (medians:
// on a shared machine a batch that loses the CPU would move a mean).
// Apply's other work (asking fetchd, reading the body, headers) is left
// out: this is the theming alone.
//
//	go test -run '^$' -bench Paths50K ./worker/theme/
func BenchmarkPaths50K(b *testing.B) {
	f, fd := newFilter(b, testRules, Options{})
	fd.set("v1", shared.ThemeFresh, benchTheme(b))
	f.Warm(context.Background())
	th := f.cur.Load()
	if th == nil || th.tmpl == nil {
		b.Fatal("theme not compiled for the streaming pass")
	}
	page := []byte(page50K())
	out := getBuf()
	const batch = 4
	run := func(path themePath) (time.Duration, uint64) {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		f.path = path
		start := time.Now()
		for range batch {
			out.B = out.B[:0]
			if err := f.themePage(out, th, page); err != nil {
				b.Fatal(err)
			}
		}
		d := time.Since(start)
		runtime.ReadMemStats(&m1)
		return d / batch, m1.Mallocs - m0.Mallocs
	}
	var domT, strT []time.Duration
	var domA, strA uint64
	for b.Loop() {
		d, a := run(pathDOM)
		domT, domA = append(domT, d), domA+a
		d, a = run(pathStream)
		strT, strA = append(strT, d), strA+a
	}
	slices.Sort(domT)
	slices.Sort(strT)
	dm, sm := domT[len(domT)/2], strT[len(strT)/2]
	n := float64(batch * len(domT))
	b.ReportMetric(float64(dm.Nanoseconds()), "dom-ns/page")
	b.ReportMetric(float64(sm.Nanoseconds()), "stream-ns/page")
	b.ReportMetric(float64(dm)/float64(sm), "dom/stream")
	b.ReportMetric(float64(domA)/n, "dom-allocs/page")
	b.ReportMetric(float64(strA)/n, "stream-allocs/page")
	if f.Fallbacks() != 0 {
		b.Errorf("%d fallbacks", f.Fallbacks())
	}
}
