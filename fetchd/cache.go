package fetchd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
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
	dir string
	log hclog.Logger

	mu     sync.RWMutex // write-locked only by Close
	db     *badger.DB
	stop   chan struct{}
	gcDone chan struct{}
}

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
			c := &Cache{dir: dir, log: log, db: db, stop: make(chan struct{}), gcDone: make(chan struct{})}
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

// openDB opens badger sized for a small process (its defaults hold ~86 MB
// of heap empty). A panic inside badger on a damaged directory becomes an
// error, so the caller can move the directory aside.
func openDB(dir string, log hclog.Logger) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("badger panicked: %v", r)
		}
	}()
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log.Named("badger")}).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithBaseTableSize(1 << 20).
		WithBaseLevelSize(4 << 20).
		WithBlockCacheSize(2 << 20).
		WithIndexCacheSize(1 << 20).
		// Badger reads the newest value-log file whole at open: small files
		// keep that (and GC rewrites) to a few MB of RSS.
		WithValueLogFileSize(4 << 20).
		// Under 15% of the memtable (or Open fails): pages go to the
		// value log, the small Entry records stay in the LSM tree.
		WithValueThreshold(1 << 10).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithMetricsEnabled(false).
		WithDetectConflicts(false)
	return badger.Open(opts)
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
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.db == nil {
		return nil
	}
	close(c.stop)
	<-c.gcDone
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
	err = c.view(func(txn *badger.Txn) error {
		item, err := txn.Get(htmlKey(name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
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
