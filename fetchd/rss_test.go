package fetchd

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
)

const (
	rssPages    = 1000
	rssPageSize = 50 << 10
	// rssGoal is issue 16's bound on fetchd's resident size with rssPages
	// cached pages of rssPageSize, every one served.
	rssGoal = 40 << 20
)

// TestRSS1000Pages runs fetchd (Main, as lanesd does) with 1,000 themes of
// 50 KB, has it fetch and serve every one over its socket, and bounds its
// resident size (VmRSS); then SIGKILLs it and starts another on the same
// cache, which must serve every page from disk, not from the origin, within
// the same bound. The bound counts everything resident: the heap, badger's
// maps of its files, and the test binary's code (lanesd's, larger, is what
// make bench measures). Anonymous memory keeps its own, older bound.
func TestRSS1000Pages(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("fills 50 MB of cache; its memory figure means nothing under -race (make test runs it without)")
	}
	page := func(i int) string {
		r := rand.New(rand.NewPCG(uint64(i), 16))
		words := []string{"lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod", "tempor"}
		var b strings.Builder
		fmt.Fprintf(&b, "<!doctype html><html><head><title>theme %d</title></head><body><div id=\"content\">placeholder</div><aside>", i)
		for b.Len() < rssPageSize-64 {
			fmt.Fprintf(&b, "<p class=\"c%d\">%s %s %s</p>\n", r.IntN(100), words[r.IntN(len(words))], words[r.IntN(len(words))], strconv.Itoa(r.IntN(1e6)))
		}
		b.WriteString("</aside></body></html>\n")
		return b.String()
	}
	var hits atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/t/"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page(i))
	}))
	defer origin.Close()

	set := settings(origin.URL)
	set.Fetchd.CacheDir = filepath.Join(t.TempDir(), "cache")
	set.Themes = nil
	for i := range rssPages {
		set.Themes = append(set.Themes, config.Theme{Name: fmt.Sprintf("t%d", i), URL: fmt.Sprintf("%s/t/%d", origin.URL, i), Rules: rules})
	}

	filled := runFetchd(t, set, "fetched from the origin, stored and served", page)
	if hits.Load() < rssPages {
		t.Fatalf("the origin served %d pages; want at least %d", hits.Load(), rssPages)
	}
	h0 := hits.Load()
	reopened := runFetchd(t, set, "restarted, every page served from disk", page)
	if n := hits.Load() - h0; n != 0 {
		t.Errorf("the restarted fetchd asked the origin %d times; want 0 (every page from its cache)", n)
	}
	for _, m := range []procMem{filled, reopened} {
		if m.rss > rssGoal {
			t.Errorf("fetchd %s: RSS %.1f MB; want at most %d MB", m.when, mb(m.rss), rssGoal>>20)
		}
		// Badger's defaults (an empty DB holds ~86 MB of heap) or pages
		// kept on the heap would take it past this.
		if m.anon > 64<<20 {
			t.Errorf("fetchd %s: %.1f MB of anonymous memory; want at most 64 MB", m.when, mb(m.anon))
		}
	}
}

// procMem is a process's memory figures from /proc/PID/status, bytes.
type procMem struct {
	when                 string
	rss, hwm, anon, file int64
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

func readProcMem(pid int) (procMem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMem{}, err
	}
	var m procMem
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			m.rss = n << 10
		case "VmHWM":
			m.hwm = n << 10
		case "RssAnon":
			m.anon = n << 10
		case "RssFile":
			m.file = n << 10
		}
	}
	if m.rss == 0 {
		return m, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}

// runFetchd starts fetchd as a go-plugin child on set, asks it for every
// theme over its socket (8 at a time, as workers would), checks each page,
// reads its memory, and SIGKILLs it.
func runFetchd(t *testing.T, set Settings, when string, page func(int) string) procMem {
	t.Helper()
	rundir, err := os.MkdirTemp("", "fd") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(rundir)
	sock := filepath.Join(rundir, "fetchd.sock")
	client := fetchdChild(t, set, sock, "warn", hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Warn, Output: testWriter{t}}))
	defer client.Kill()
	rpc, err := client.Client()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rpc.Dispense(shared.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := raw.(shared.Control).Health(ctx)
	if err != nil || h.PID == 0 {
		t.Fatalf("health: %+v %v", h, err)
	}
	svc, closeSvc, err := shared.DialThemeService(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSvc()

	var (
		wg     sync.WaitGroup
		next   atomic.Int64
		served atomic.Int64
		mu     sync.Mutex
		errs   []string
	)
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(set.Themes); i = int(next.Add(1) - 1) {
				d, err := svc.Theme(ctx, set.Themes[i].Name, "")
				if err == nil && (d.State != shared.ThemeFresh || !bytes.Equal(d.HTML, []byte(page(i)))) {
					err = fmt.Errorf("%s: state %s, %d bytes of HTML, not the origin's page", set.Themes[i].Name, d.State, len(d.HTML))
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					continue
				}
				served.Add(int64(len(d.HTML)))
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("fetchd %s: %d of %d lookups failed; first: %s", when, len(errs), len(set.Themes), errs[0])
	}
	m, err := readProcMem(h.PID)
	if err != nil {
		t.Fatal(err)
	}
	m.when = when
	t.Logf("fetchd %s: %d pages, %.1f MB served; RSS %.1f MB (peak %.1f MB) = anonymous %.1f MB + files %.1f MB",
		when, len(set.Themes), mb(served.Load()), mb(m.rss), mb(m.hwm), mb(m.anon), mb(m.file))
	// As the bench does: an unclean exit, which the next fetchd must
	// survive with every page.
	if err := syscall.Kill(h.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	return m
}
