package fetchd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/logging"
)

// ErrCacheClosed is returned by a Cache used after Close.
var ErrCacheClosed = errors.New("fetchd: cache closed")

// Entry is what the cache keeps about a theme's last good copy. There is no
// TTL: a stale copy is kept, and max_stale decides whether it is served.
type Entry struct {
	URL          string        `json:"url"`     // the copy is of this URL; a changed url makes it void
	Version      string        `json:"version"` // hash of the HTML
	Fetched      time.Time     `json:"fetched"` // fetched, or last revalidated (304)
	ETag         string        `json:"etag,omitempty"`
	LastModified string        `json:"last_modified,omitempty"`
	MaxAge       time.Duration `json:"max_age,omitempty"` // the origin's Cache-Control max-age
	Size         int           `json:"size"`              // bytes of HTML
}

// CacheOptions tune OpenCache. The zero value is a cache that fails at once
// on a held lock and leaves a corrupt directory alone (what -check wants).
type CacheOptions struct {
	Log hclog.Logger
	// LockWait is how long to retry badger's directory lock, with backoff:
	// the previous fetchd of the same lanesd may still be exiting.
	LockWait time.Duration
	// MoveCorrupt moves a directory badger cannot open aside, as
	// DIR.corrupt-TIMESTAMP, and starts empty, so a damaged cache never
	// makes fetchd crash-loop.
	MoveCorrupt bool
	// GCInterval is how often the value log is garbage-collected; 0 means
	// every 10 minutes.
	GCInterval time.Duration
}

// Cache is fetchd's persistent store of themes' last good copies, one badger
// database in cache_dir. Keys: "m/NAME" holds the Entry as JSON, "h/NAME"
// holds "VERSION\n" followed by the HTML, so a reader always gets a version
// and the HTML it names together. Every method is safe for concurrent use.
type Cache struct {
	dir     string
	realDir string // dir as /proc/self/maps names it: absolute, no symlinks
	log     hclog.Logger

	// mu is write-locked by Close and by unmap: no badger call runs then.
	mu       sync.RWMutex
	db       *badger.DB
	stop     chan struct{}
	stopOnce sync.Once
	gcDone   chan struct{}

	mapMu    sync.Mutex
	mapAddrs []uintptr // in value-log pages mapped since the last unmap
	mapBytes int64     // how much that mapped, at most
	mapWarn  sync.Once
}

// unmapAfter is how much of the value log the Cache leaves mapped (pages
// stored or served) before it unmaps it: each unmap costs a TLB shootdown
// on every CPU, hundreds of µs on a busy virtual machine.
const unmapAfter = 2 << 20

// OpenCache opens (creating it if needed) the cache in dir.
func OpenCache(dir string, o CacheOptions) (*Cache, error) {
	log := o.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache_dir %s: %w", dir, err)
	}
	if err := syscall.Access(dir, 0o2|0o1); err != nil {
		return nil, fmt.Errorf("cache_dir %s is not writable: %w", dir, err)
	}
	deadline := time.Now().Add(o.LockWait)
	delay := 50 * time.Millisecond
	moved := false
	for {
		db, err := openDB(dir, log)
		if err == nil {
			c := &Cache{dir: dir, realDir: realDir(dir), log: log, db: db, stop: make(chan struct{}), gcDone: make(chan struct{})}
			c.unmap(true) // opening read the newest value-log file whole
			gc := o.GCInterval
			if gc <= 0 {
				gc = 10 * time.Minute
			}
			go c.gcLoop(gc)
			return c, nil
		}
		if isLockError(err, dir) {
			left := time.Until(deadline)
			if left <= 0 {
				return nil, inUseError(dir, lockPID(dir))
			}
			log.Debug("cache_dir locked; retrying", "dir", dir, "in", logging.Dur(min(delay, left)))
			time.Sleep(min(delay, left))
			delay = min(2*delay, time.Second)
			continue
		}
		if !o.MoveCorrupt || moved || strings.Contains(err.Error(), "permission denied") {
			return nil, fmt.Errorf("cache_dir %s: open: %w", dir, err)
		}
		aside := dir + ".corrupt-" + time.Now().Format("20060102T150405")
		if rerr := os.Rename(dir, aside); rerr != nil {
			return nil, fmt.Errorf("cache_dir %s: open: %w (moving it aside failed: %v)", dir, err, rerr)
		}
		log.Warn("cache_dir could not be opened; moved it aside and starting with an empty cache",
			"dir", dir, "moved_to", aside, "error", err)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("cache_dir %s: %w", dir, err)
		}
		moved = true
	}
}

// openDB opens badger sized for a small process: its defaults hold ~86 MB
// of heap empty, and fetchd's goal is 40 MB resident with 1,000 cached
// pages of 50 KB (issue 16). A panic inside badger on a damaged directory
// becomes an error, so the caller can move the directory aside.
//
// Pages go to the value log, the small Entry records (and the pages'
// pointers) to the LSM tree. Badger v4 maps both through mmap (its FileIO
// modes went in badger#1555), so pages in the LSM would not stay out of
// the resident set either; there they would also pass through the
// memtable (on the heap, and at least 1/0.15 of the largest page) and be
// rewritten by every compaction. The value log writes a page once, and
// the Cache unmaps what it touched there (touched, unmap).
func openDB(dir string, log hclog.Logger) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("badger panicked: %v", r)
		}
	}()
	return badger.Open(badgerOptions(dir, log, memTableSize(dir)))
}

// memTable is the size of badger's memtables: the arena of each is heap,
// allocated whole, and 1 MB holds thousands of Entry records and page
// pointers.
const memTable = 1 << 20

// memTableSize is memTable, or the size of the memtable that wrote the
// largest write-ahead log in dir if that was larger. Badger creates a
// memtable's log (N.mem) at twice the memtable's size and replays it at
// open into a memtable of the size open now: the log an unclean exit left
// of a fetchd with larger memtables (4 MB before issue 16) needs its size
// back, or badger panics ("Arena too small") and the cache is lost. The
// next clean close flushes it, and the open after that is back to
// memTable.
func memTableSize(dir string) int64 {
	size := int64(memTable)
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		if filepath.Ext(f.Name()) != ".mem" {
			continue
		}
		if fi, err := f.Info(); err == nil && fi.Size()/2 > size {
			size = fi.Size() / 2
		}
	}
	return size
}

// badgerOptions are the options of fetchd's badger, with memtables of
// memTableSize bytes.
func badgerOptions(dir string, log hclog.Logger, memTableSize int64) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log.Named("badger")}).
		WithMemTableSize(memTableSize).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithBaseTableSize(1 << 20).
		WithBaseLevelSize(4 << 20).
		// The tables hold only small records: uncompressed, their blocks
		// are read in place from the map, with no block or index cache on
		// the heap. (A table written compressed says so in the manifest
		// and is still read, decompressing on each read.)
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		// Badger reads the newest value-log file whole at open, and GC
		// rewrites a file at a time: small files keep both small.
		WithValueLogFileSize(4 << 20).
		// Under 15% of the memtable (or Open fails).
		WithValueThreshold(1 << 10).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithMetricsEnabled(false).
		WithDetectConflicts(false)
}

// isLockError tells badger's "Cannot acquire directory lock" from other
// open failures; badger flattens its errors to text.
func isLockError(err error, dir string) bool {
	if strings.Contains(err.Error(), "Cannot acquire directory lock") {
		return true
	}
	busy, _, _ := probeLock(dir)
	return busy
}

// realDir is dir absolute and with symlinks resolved, or as given if that
// fails (then no mapping matches it and nothing is unmapped).
func realDir(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	return abs
}

// touched notes that a value-log record v, in badger's map, was stored or
// served; it must run inside badger's Item.Value callback. It reports
// whether enough is mapped now for an unmap.
func (c *Cache) touched(v []byte) bool {
	addr, size := mappedBy(v)
	if size == 0 {
		return false
	}
	c.mapMu.Lock()
	defer c.mapMu.Unlock()
	c.mapAddrs = append(c.mapAddrs, addr)
	c.mapBytes += size
	return c.mapBytes >= unmapAfter
}

// unmap takes the value log's mappings that hold the addresses noted by
// touched (every one, with every) out of fetchd's resident set; see
// unmapValueLog. It waits for the badger calls in flight and holds others
// off meanwhile.
func (c *Cache) unmap(every bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.db == nil {
		return
	}
	c.mapMu.Lock()
	addrs := c.mapAddrs
	c.mapAddrs, c.mapBytes = nil, 0
	c.mapMu.Unlock()
	if every {
		addrs = nil
	} else if len(addrs) == 0 {
		return
	}
	if err := unmapValueLog(c.realDir, addrs); err != nil {
		c.mapWarn.Do(func() {
			c.log.Warn("cannot unmap the value log; fetchd's resident size will grow with the pages it stores and serves", "error", err)
		})
	}
}

func (c *Cache) gcLoop(every time.Duration) {
	defer close(c.gcDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.runGC()
			c.unmap(true) // GC read and rewrote records
		}
	}
}

// runGC rewrites value-log files that are at least half garbage, a few at
// most per round so the cache stays responsive.
func (c *Cache) runGC() {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.db == nil {
		return
	}
	for range 4 {
		if err := c.db.RunValueLogGC(0.5); err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				c.log.Warn("value log GC", "error", err)
			}
			return
		}
	}
}

// Close stops the GC and closes badger, flushing the memtable. It is safe to
// call more than once.
func (c *Cache) Close() error {
	// The GC loop stops first: a round it is in takes mu (runGC, unmap),
	// and would wait forever for a Close that held it.
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.gcDone
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.db == nil {
		return nil
	}
	err := c.db.Close()
	c.db = nil
	if err != nil {
		return fmt.Errorf("cache_dir %s: close: %w", c.dir, err)
	}
	return nil
}

// Err reports whether the cache is usable: ErrCacheClosed after Close.
func (c *Cache) Err() error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.db == nil {
		return ErrCacheClosed
	}
	return nil
}

func metaKey(name string) []byte { return []byte("m/" + name) }
func htmlKey(name string) []byte { return []byte("h/" + name) }

// Load returns the Entry of theme name, if the cache has one.
func (c *Cache) Load(name string) (e Entry, ok bool, err error) {
	err = c.view(func(txn *badger.Txn) error {
		item, err := txn.Get(metaKey(name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ok = true
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &e) })
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("cache: load %s: %w", name, err)
	}
	return e, ok, nil
}

// HTML returns the stored page of theme name and the version it is; ok is
// false when there is none.
func (c *Cache) HTML(name string) (version string, html []byte, ok bool, err error) {
	full := false
	err = c.view(func(txn *badger.Txn) error {
		item, err := txn.Get(htmlKey(name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var v []byte
		err = item.Value(func(in []byte) error {
			v = append([]byte(nil), in...)
			full = c.touched(in)
			return nil
		})
		if err != nil {
			return err
		}
		i := bytes.IndexByte(v, '\n')
		if i < 0 {
			return fmt.Errorf("malformed record")
		}
		version, html, ok = string(v[:i]), v[i+1:], true
		return nil
	})
	if err != nil {
		return "", nil, false, fmt.Errorf("cache: read %s: %w", name, err)
	}
	if full {
		c.unmap(false)
	}
	return version, html, ok, nil
}

// Put stores a new good copy of theme name: its Entry and its HTML, in one
// transaction.
func (c *Cache) Put(name string, e Entry, html []byte) error {
	meta, err := json.Marshal(e)
	if err != nil {
		return err
	}
	rec := make([]byte, 0, len(e.Version)+1+len(html))
	rec = append(append(append(rec, e.Version...), '\n'), html...)
	err = c.update(func(txn *badger.Txn) error {
		if err := txn.Set(htmlKey(name), rec); err != nil {
			return err
		}
		return txn.Set(metaKey(name), meta)
	})
	if err != nil {
		return fmt.Errorf("cache: store %s: %w", name, err)
	}
	// Badger wrote the record through its map of the value log: find it
	// there (a read that maps nothing new) to note what it mapped. The
	// record is stored whatever this finds.
	full := false
	_ = c.view(func(txn *badger.Txn) error {
		item, err := txn.Get(htmlKey(name))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { full = c.touched(v); return nil })
	})
	if full {
		c.unmap(false)
	}
	return nil
}

// Touch rewrites only the Entry of theme name (after a 304, or an unchanged
// body): the HTML stays.
func (c *Cache) Touch(name string, e Entry) error {
	meta, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := c.update(func(txn *badger.Txn) error { return txn.Set(metaKey(name), meta) }); err != nil {
		return fmt.Errorf("cache: store %s: %w", name, err)
	}
	return nil
}

// Stats counts the cached copies and their HTML bytes.
func (c *Cache) Stats() (entries int, size int64, err error) {
	err = c.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("m/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var e Entry
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return err
			}
			entries++
			size += int64(e.Size)
		}
		return nil
	})
	return entries, size, err
}

func (c *Cache) view(fn func(*badger.Txn) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.db == nil {
		return ErrCacheClosed
	}
	return c.db.View(fn)
}

func (c *Cache) update(fn func(*badger.Txn) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.db == nil {
		return ErrCacheClosed
	}
	return c.db.Update(fn)
}

// badgerLogger routes badger's log lines into hclog. Badger's INFO lines are
// its routine chatter (tables opened, replay), so they go to DEBUG.
type badgerLogger struct{ log hclog.Logger }

func (l badgerLogger) Errorf(f string, a ...any) { l.log.Error(line(f, a)) }
func (l badgerLogger) Warningf(f string, a ...any) {
	l.log.Warn(line(f, a))
}
func (l badgerLogger) Infof(f string, a ...any)  { l.log.Debug(line(f, a)) }
func (l badgerLogger) Debugf(f string, a ...any) { l.log.Trace(line(f, a)) }

func line(f string, a []any) string { return strings.TrimRight(fmt.Sprintf(f, a...), "\n") }

var _ badger.Logger = badgerLogger{}
