package fetchd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/config"
)

// TestMain doubles as the helper process that holds a cache open, the way
// another lanesd's fetchd would.
func TestMain(m *testing.M) {
	if dir := os.Getenv("FETCHD_TEST_HOLD"); dir != "" {
		holdCache(dir)
		return
	}
	if os.Getenv("FETCHD_TEST_MAIN") != "" {
		os.Exit(Main())
	}
	if dir := os.Getenv("FETCHD_TEST_OLD_WAL"); dir != "" {
		writeOldWAL(dir)
		return
	}
	os.Exit(m.Run())
}

// holdCache opens dir, says "ready", and exits when its parent does.
func holdCache(dir string) {
	c, err := OpenCache(dir, CacheOptions{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	ppid := os.Getppid()
	for os.Getppid() == ppid {
		time.Sleep(20 * time.Millisecond)
	}
	_ = c.Close()
	os.Exit(0)
}

func TestTwoCachesOnOneDir(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCache(dir, CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t0 := time.Now()
	_, err = OpenCache(dir, CacheOptions{LockWait: 300 * time.Millisecond})
	if !errors.Is(err, ErrCacheInUse) || !strings.Contains(err.Error(), "cache_dir "+dir+" is in use by another lanesd") {
		t.Fatalf("second open: %v, want a clear in-use error", err)
	}
	if el := time.Since(t0); el < 200*time.Millisecond || el > 2*time.Second {
		t.Errorf("gave up after %v, want about the 300ms lock wait", el)
	}
	// The holder is this very process: not "another lanesd".
	if err := CheckCacheDir(dir); err != nil {
		t.Errorf("CheckCacheDir of our own cache: %v", err)
	}

	// The lock is taken again once the holder closes, within the wait.
	go func() { time.Sleep(200 * time.Millisecond); _ = c.Close() }()
	c2, err := OpenCache(dir, CacheOptions{LockWait: 3 * time.Second})
	if err != nil {
		t.Fatalf("open after the holder closed: %v", err)
	}
	_ = c2.Close()
}

// TestCacheDirHeldByAnotherLanesd runs the holder as a grandchild (through
// sh), so it is not this process's own fetchd.
func TestCacheDirHeldByAnotherLanesd(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `"$0" & wait`, os.Args[0])
	cmd.Env = append(os.Environ(), "FETCHD_TEST_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("holder: %q", line)
	}
	err = CheckCacheDir(dir)
	if !errors.Is(err, ErrCacheInUse) || !strings.Contains(err.Error(), fmt.Sprintf("in use by another lanesd (pid %d, its fetchd pid", cmd.Process.Pid)) {
		t.Fatalf("CheckCacheDir: %v, want in use by pid %d", err, cmd.Process.Pid)
	}
	t.Log(err)
}

func TestCheckCacheDirPaths(t *testing.T) {
	base := t.TempDir()
	if err := CheckCacheDir(filepath.Join(base, "a", "b")); err != nil {
		t.Errorf("creatable dir: %v", err)
	}
	file := filepath.Join(base, "f")
	_ = os.WriteFile(file, nil, 0o600)
	if err := CheckCacheDir(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file as cache_dir: %v", err)
	}
	if err := CheckCacheDir(filepath.Join(file, "x")); err == nil {
		t.Errorf("dir under a file: no error")
	}
}

func TestCorruptCacheMovedAside(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "cache")
	_ = os.MkdirAll(dir, 0o700)
	for _, name := range []string{"MANIFEST", "000001.vlog", "000001.sst", "KEYREGISTRY"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Repeat("garbage!", 500)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// What -check does: report, move nothing.
	if _, err := OpenCache(dir, CacheOptions{}); err == nil {
		t.Fatal("garbage cache opened without MoveCorrupt")
	}
	c, err := OpenCache(dir, CacheOptions{Log: testLog(t), MoveCorrupt: true})
	if err != nil {
		t.Fatalf("open with MoveCorrupt: %v", err)
	}
	defer c.Close()
	if n, _, _ := c.Stats(); n != 0 {
		t.Errorf("%d entries, want an empty cache", n)
	}
	aside, _ := filepath.Glob(dir + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("moved-aside dirs: %v, want one", aside)
	}
	if _, err := os.Stat(filepath.Join(aside[0], "MANIFEST")); err != nil {
		t.Errorf("garbage not kept for inspection: %v", err)
	}
}

func TestCacheRoundTrip(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCache(dir, CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := Entry{URL: "http://x/", Version: "v1", Fetched: time.Now().UTC().Round(0), ETag: `"a"`, MaxAge: time.Minute, Size: 5}
	if err := c.Put("main", e, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if err := c.Put("x", e, nil); !errors.Is(err, ErrCacheClosed) {
		t.Errorf("put after close: %v", err)
	}
	c, err = OpenCache(dir, CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, ok, err := c.Load("main")
	if err != nil || !ok || !got.Fetched.Equal(e.Fetched) || got.ETag != e.ETag || got.MaxAge != e.MaxAge {
		t.Fatalf("load: %+v %v %v", got, ok, err)
	}
	v, html, ok, err := c.HTML("main")
	if err != nil || !ok || v != "v1" || string(html) != "hello" {
		t.Fatalf("html: %q %q %v %v", v, html, ok, err)
	}
	if n, size, _ := c.Stats(); n != 1 || size != 5 {
		t.Errorf("stats %d entries %d bytes", n, size)
	}
}

// holdElsewhere has a grandchild (through sh) hold dir, as the fetchd of
// another, running lanesd would.
func holdElsewhere(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("sh", "-c", `"$0" & wait`, os.Args[0])
	cmd.Env = append(os.Environ(), "FETCHD_TEST_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("holder: %q", line)
	}
}

// lanesd -check on a live host: the running lanesd holds cache_dir. That
// is a warning, not a failure; and as its cache cannot be read, neither is
// an origin that does not answer. A cache_dir unusable otherwise still
// fails.
func TestCheckLiveHost(t *testing.T) {
	o := newTestOrigin(t)
	dir := t.TempDir()
	holdElsewhere(t, dir)
	cfg := func(dir string) *config.Config {
		set := settings(o.URL)
		set.Fetchd.CacheDir = dir
		set.Fetchd.FetchTimeout = time.Second
		return &config.Config{App: config.App{Theme: "main"}, Fetchd: &set.Fetchd, Themes: set.Themes}
	}
	ctx := context.Background()

	diags := Check(ctx, cfg(dir))
	if diags.HasErrors() || len(diags) != 1 || !strings.Contains(diags[0].Detail, "in use by another lanesd") {
		t.Errorf("cache_dir held by a running lanesd, origin up: %v; want one warning", diags)
	}
	o.Close()
	diags = Check(ctx, cfg(dir))
	if diags.HasErrors() || len(diags) != 2 || !strings.Contains(diags[1].Detail, "can neither be fetched") {
		t.Errorf("cache_dir held by a running lanesd, origin down: %v; want two warnings", diags)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if diags := Check(ctx, cfg(file)); !diags.HasErrors() || !strings.Contains(diags[0].Detail, "not a directory") {
		t.Errorf("cache_dir a file: %v; want an error", diags)
	}
}

// oldWALEntries is how many Entry records writeOldWAL leaves in its
// write-ahead log: about 2.5 MB, more than a 1 MB memtable holds.
const oldWALEntries = 4000

// writeOldWAL writes oldWALEntries Entry records into the cache in dir
// with the 4 MB memtables fetchd used before issue 16, and exits without
// closing it, as a SIGKILLed fetchd would: they are all in its memtable's
// write-ahead log.
func writeOldWAL(dir string) {
	db, err := badger.Open(badgerOptions(dir, hclog.NewNullLogger(), 4<<20))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	for i := range oldWALEntries {
		e := Entry{URL: fmt.Sprintf("http://origin/%d/%s", i, strings.Repeat("x", 500)), Version: fmt.Sprintf("v%d", i), Fetched: time.Now(), Size: i}
		meta, _ := json.Marshal(e)
		if err := db.Update(func(txn *badger.Txn) error { return txn.Set(metaKey(fmt.Sprintf("t%d", i)), meta) }); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
	fmt.Println("written")
	os.Exit(0)
}

// TestOldWriteAheadLog opens a cache that a fetchd with larger memtables
// left unclosed: every record is there, and nothing is moved aside.
func TestOldWriteAheadLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FETCHD_TEST_OLD_WAL="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "written") {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var wal int64
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		if fi, err := f.Info(); err == nil && filepath.Ext(f.Name()) == ".mem" {
			wal = max(wal, fi.Size())
		}
	}
	if wal <= 2*memTable {
		t.Fatalf("the helper left no write-ahead log larger than this fetchd's (%d bytes)", wal)
	}
	c, err := OpenCache(dir, CacheOptions{MoveCorrupt: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if aside, _ := filepath.Glob(dir + ".corrupt-*"); len(aside) > 0 {
		t.Fatalf("cache moved aside: %v", aside)
	}
	n, _, err := c.Stats()
	if err != nil || n != oldWALEntries {
		t.Fatalf("entries after reopening: %d (%v); want %d", n, err, oldWALEntries)
	}
	if e, ok, err := c.Load(fmt.Sprintf("t%d", oldWALEntries-1)); err != nil || !ok || e.Version != fmt.Sprintf("v%d", oldWALEntries-1) {
		t.Errorf("last record: %+v %v %v", e, ok, err)
	}
}

// BenchmarkCacheHTML reads 50 KB pages from a cache of 200, each in turn,
// as fetchd does for a worker that lacks the current version: the value
// log is paged out after reads, so most of these come from disk (or the
// page cache) again rather than from fetchd's own mappings.
func BenchmarkCacheHTML(b *testing.B) {
	c, err := OpenCache(b.TempDir(), CacheOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const pages, size = 200, 50 << 10
	for i := range pages {
		p := append([]byte(fmt.Sprintf("<html><body><div id=\"content\">%d</div>", i)), strings.Repeat("lorem ipsum ", size/12)...)
		if err := c.Put(fmt.Sprintf("t%d", i), Entry{URL: "u", Version: version(p), Size: len(p)}, p); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(size)
	for i := 0; b.Loop(); i++ {
		if _, html, ok, err := c.HTML(fmt.Sprintf("t%d", i%pages)); err != nil || !ok || len(html) < size {
			b.Fatalf("page %d: %d bytes, %v %v", i%pages, len(html), ok, err)
		}
	}
}

// TestCloseDuringGC closes caches whose value-log GC runs all the time: a
// GC round waiting for the lock Close held used to hang Close for good.
func TestCloseDuringGC(t *testing.T) {
	dir := t.TempDir()
	for i := range 20 {
		c, err := OpenCache(dir, CacheOptions{GCInterval: 200 * time.Microsecond})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i%7) * 300 * time.Microsecond)
		done := make(chan error, 1)
		go func() { done <- c.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Close still waiting after 10 s (round %d): deadlocked with the GC loop", i)
		}
	}
}
