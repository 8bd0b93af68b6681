package fetchd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
)

const (
	rssPages    = 1000
	rssPageSize = 50 << 10
)

// TestRSS1000Pages fills a cache with 1,000 pages of 50 KB, then opens it in
// a fresh process that serves three themes, then every page once, and
// reports that process's heap and resident size after each, and fails when
// its anonymous memory passes 64 MB. Pages read come through badger's mmap of the value log: they
// count as RssFile (clean page cache the kernel can drop), not heap.
func TestRSS1000Pages(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("fills 50 MB of cache; its memory figure means nothing under -race (make test runs it without)")
	}
	dir := t.TempDir()
	c, err := OpenCache(dir, CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	page := bytes.Repeat([]byte("<p>lorem ipsum dolor sit amet</p>\n"), rssPageSize/35)
	for i := range rssPages {
		p := append([]byte(fmt.Sprintf("<html><body><div id=\"content\">%d</div>", i)), page...)
		e := Entry{URL: fmt.Sprintf("http://origin/%d", i), Version: version(p), Fetched: time.Now(), Size: len(p)}
		if err := c.Put(fmt.Sprintf("t%d", i), e, p); err != nil {
			t.Fatal(err)
		}
	}
	writerRSS := shared.SelfRSS()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FETCHD_TEST_RSS="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	t.Logf("test process after writing the pages: RSS %.1f MB (the writer, not fetchd)", float64(writerRSS)/(1<<20))
	var anonKB int64
	for l := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		t.Logf("fetchd-like process, %d cached pages of %d KB: %s", rssPages, rssPageSize>>10, l)
		if i := strings.Index(l, "RssAnon: "); i >= 0 {
			var kb int64
			if _, err := fmt.Sscanf(l[i:], "RssAnon: %d kB", &kb); err == nil {
				anonKB = max(anonKB, kb)
			}
		}
	}
	// The resident size counts badger's memory-mapped value log, which
	// the kernel drops under pressure (the figure make bench reports);
	// what the process itself holds is its anonymous memory: 14-16 MB
	// measured. Badger's defaults (an empty DB holds ~86 MB of heap) or
	// pages kept on the heap would take it past this.
	const maxAnonMB = 64
	if anonKB == 0 {
		t.Fatalf("no RssAnon figure in the helper's report:\n%s", out)
	}
	if anonKB > maxAnonMB<<10 {
		t.Errorf("fetchd-like process holds %d MB of anonymous memory serving %d cached pages; want at most %d MB", anonKB>>10, rssPages, maxAnonMB)
	}
}

// rssHelper opens the cache as fetchd does, with all pages as themes,
// serves each once and prints its memory figures.
func rssHelper() {
	dir := os.Getenv("FETCHD_TEST_RSS")
	c, err := OpenCache(dir, CacheOptions{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	set := Settings{Fetchd: config.Fetchd{Workers: 2, FetchTimeout: time.Second, MinRefresh: time.Hour, MaxStale: time.Hour}}
	for i := range rssPages {
		set.Themes = append(set.Themes, config.Theme{Name: fmt.Sprintf("t%d", i), URL: fmt.Sprintf("http://origin/%d", i)})
	}
	s, err := NewService(c, set, Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	var served int
	serve := func(n int) {
		for i := range n {
			d, _ := s.Theme(context.Background(), fmt.Sprintf("t%d", i), "")
			served += len(d.HTML)
		}
	}
	serve(3)
	report(s, served)
	serve(rssPages)
	report(s, served)
	_ = s.Close(context.Background())
	_ = c.Close()
	os.Exit(0)
}

func report(s *Service, served int) {
	st, _ := s.Status(context.Background())
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, _ := os.ReadFile("/proc/self/status")
	var rss []string
	for l := range strings.SplitSeq(string(status), "\n") {
		if strings.HasPrefix(l, "Rss") {
			rss = append(rss, strings.Join(strings.Fields(l), " "))
		}
	}
	fmt.Printf("served %.1f MB; cache %d entries %d MB; heap in use %.1f MB, Go sys %.1f MB, RSS %.1f MB (%s)\n",
		float64(served)/(1<<20), st.CacheEntries, st.CacheBytes>>20, float64(ms.HeapInuse)/(1<<20), float64(ms.Sys)/(1<<20), float64(shared.SelfRSS())/(1<<20),
		strings.Join(rss, ", "))
}
