package fetchd

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func TestValueLogMapping(t *testing.T) {
	dir := "/var/lib/lanes/fetchd cache"
	for _, c := range []struct {
		line       string
		ok         bool
		start, end uintptr
	}{
		{"7f0000000000-7f0000800000 rw-s 00000000 fe:00 1234                       /var/lib/lanes/fetchd cache/000001.vlog", true, 0x7f0000000000, 0x7f0000800000},
		{"7f0000000000-7f0000800000 r--s 00000000 fe:00 1234 /var/lib/lanes/fetchd cache/000002.vlog", true, 0x7f0000000000, 0x7f0000800000},
		{"7f0000000000-7f0000800000 rw-p 00000000 fe:00 1234 /var/lib/lanes/fetchd cache/000001.vlog", false, 0, 0},           // private
		{"7f0000000000-7f0000800000 rw-s 00000000 fe:00 1234 /var/lib/lanes/fetchd cache/00001.mem", false, 0, 0},             // a memtable's log
		{"7f0000000000-7f0000800000 rw-s 00000000 fe:00 1234 /var/lib/lanes/fetchd cache/000001.vlog (deleted)", false, 0, 0}, // gone
		{"7f0000000000-7f0000800000 rw-s 00000000 fe:00 1234 /var/lib/lanes/other/000001.vlog", false, 0, 0},
		{"7f0000000000-7f0000800000 rw-s 00000000 fe:00 1234 /var/lib/lanes/fetchd cache/sub/000001.vlog", false, 0, 0},
		{"7f0000000000-7f0000800000 rw-p 00000000 00:00 0", false, 0, 0}, // anonymous
		{"7f0000800000-7f0000000000 rw-s 00000000 fe:00 1234 /var/lib/lanes/fetchd cache/000001.vlog", false, 0, 0},
		{"", false, 0, 0},
	} {
		start, end, ok := valueLogMapping([]byte(c.line), dir)
		if ok != c.ok || start != c.start || end != c.end {
			t.Errorf("%q: %#x-%#x %v; want %#x-%#x %v", c.line, start, end, ok, c.start, c.end, c.ok)
		}
	}
}

// TestValueLogUnmapped writes pages and reads them back: the value log's
// pages do not stay resident in this process beyond unmapAfter, and every
// page reads back whole. What badger maps by itself (here: reads that
// bypass Cache.HTML) goes with an unmap of every mapping.
func TestValueLogUnmapped(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCache(dir, CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const pages, size = 200, 50 << 10
	page := func(i int) []byte {
		return append([]byte(fmt.Sprintf("<html><body><div id=\"content\">%d</div>", i)), bytes.Repeat([]byte{byte('a' + i%26)}, size)...)
	}
	for i := range pages {
		p := page(i)
		if err := c.Put(fmt.Sprintf("t%d", i), Entry{URL: "u", Version: version(p), Size: len(p)}, p); err != nil {
			t.Fatal(err)
		}
	}
	resident(t, c, "after writing 10 MB", unmapAfter+faultAround)
	for i := range pages {
		_, html, ok, err := c.HTML(fmt.Sprintf("t%d", i))
		if err != nil || !ok || !bytes.Equal(html, page(i)) {
			t.Fatalf("page %d: %d bytes, %v %v", i, len(html), ok, err)
		}
	}
	resident(t, c, "after reading 10 MB", unmapAfter+faultAround)

	var sum int
	err = c.db.View(func(txn *badger.Txn) error {
		for i := range pages {
			item, err := txn.Get(htmlKey(fmt.Sprintf("t%d", i)))
			if err != nil {
				return err
			}
			if err := item.Value(func(v []byte) error {
				for _, b := range v {
					sum += int(b)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || sum == 0 {
		t.Fatal(err)
	}
	if kb := valueLogResidentKB(t, c.realDir); kb < 8<<10 {
		t.Fatalf("reading 10 MB in place left %d kB of the value log resident: this test measures nothing", kb)
	}
	c.unmap(true)
	resident(t, c, "after an unmap", 0)
}

// resident fails if more than limit bytes of c's value log are resident
// in this process.
func resident(t *testing.T, c *Cache, when string, limit int64) {
	t.Helper()
	if kb := valueLogResidentKB(t, c.realDir); kb<<10 > limit {
		t.Errorf("%s: %d kB of the value log resident; want at most %d kB", when, kb, limit>>10)
	}
}

// valueLogResidentKB sums Rss over this process's mappings of dir's
// value-log files, from /proc/self/smaps.
func valueLogResidentKB(t *testing.T, dir string) int64 {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var kb int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if _, _, ok := strings.Cut(line, ":"); ok && !strings.Contains(strings.Fields(line)[0], "-") {
			if in && strings.HasPrefix(line, "Rss:") {
				n, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
				kb += n
			}
			continue
		}
		_, _, in = valueLogMapping([]byte(line), dir)
	}
	return kb
}
