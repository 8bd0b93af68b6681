package integration

import (
	"strings"
	"testing"
	"time"
)

// Issue 15, item 5: a theme page of 400,000 elements (3.2 MB, under the
// 4 MiB cap) is refused by fetchd with its reason and counted; the site
// stays themed with the last good copy, as fast as before, and no worker
// or fetchd grows with the page.
func TestThemeHugePageRefused(t *testing.T) {
	t.Parallel()
	o := newThemeOrigin(t)
	l := startLanesd(t, o.conf(t, themeConf{minRefresh: "1s"}).hcl())
	if r := l.get("/page"); !themed(r) {
		t.Fatalf("first request: want themed, got %s", r)
	}
	good := l.theme(t).Version
	rssBefore := workerRSS(t, l)

	o.set(originHuge)
	time.Sleep(1200 * time.Millisecond) // the copy is stale: the next ask refreshes it
	l.get("/page")
	waitFor(t, "fetchd to refuse the huge page", 10*time.Second, func() bool { return l.theme(t).Rejected >= 1 })

	rs := l.burst(200, "/page")
	for i, r := range rs {
		if !themed(r) || !strings.Contains(string(r.body), " v1<") {
			t.Fatalf("request %d with the huge page on offer: want the v1 theme, got %s", i, r)
		}
	}
	p50, p99, _ := latencies(rs)
	th := l.theme(t)
	if th.Version != good {
		t.Errorf("theme version %q, want the last good %q", th.Version, good)
	}
	if !strings.Contains(th.LastError, "more than 20000 elements") {
		t.Errorf("last_error %q, want the element limit named", th.LastError)
	}
	rssAfter := workerRSS(t, l)
	t.Logf("200 requests with the huge page refused: p50 %v p99 %v; worker RSS %d → %d MB; theme %+v",
		p50, p99, rssBefore>>20, rssAfter>>20, th)
	if rssAfter-rssBefore > 64<<20 {
		t.Errorf("workers grew by %d MB", (rssAfter-rssBefore)>>20)
	}
}

// workerRSS is the largest resident size among the default lane's workers.
func workerRSS(t *testing.T, l *lanesd) int64 {
	t.Helper()
	var top int64
	for _, ln := range l.status(t).Lanes {
		for _, w := range ln.Workers {
			top = max(top, w.RSS)
		}
	}
	return top
}
