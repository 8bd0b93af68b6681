package logging

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// maxLimiterKeys bounds the keys a Limiter remembers. Keys are chosen by
// code, not by clients, so this is a safety net: past it, stale keys go
// first, and if none is stale the message is logged unlimited.
const maxLimiterKeys = 1024

// Limiter logs at most one message per key per interval and reports the
// rest as one "N similar messages suppressed" line when the interval ends.
// A failing upstream under load otherwise writes a warning per request
// (76,063 identical lines in 4 s, in one measured outage), which costs the
// CPU the requests need and buries every other line.
//
// The zero value is not usable; build one with NewLimiter. A Limiter is safe
// for concurrent use.
type Limiter struct {
	log   hclog.Logger
	every time.Duration

	mu      sync.Mutex
	keys    map[string]*limitKey
	stopped bool
}

type limitKey struct {
	level      hclog.Level
	msg        string
	last       time.Time   // when the last message for this key was logged
	suppressed int         // messages dropped since then
	timer      *time.Timer // reports suppressed at last+every; nil if none
}

// NewLimiter returns a Limiter that logs through log at most one message per
// key every interval (one second if interval <= 0).
func NewLimiter(log hclog.Logger, interval time.Duration) *Limiter {
	if interval <= 0 {
		interval = time.Second
	}
	return &Limiter{log: log, every: interval, keys: make(map[string]*limitKey)}
}

// Warn logs msg at warning level, rate-limited with msg as the key.
func (l *Limiter) Warn(msg string, args ...any) { l.Log(hclog.Warn, msg, msg, args...) }

// Error logs msg at error level, rate-limited with msg as the key.
func (l *Limiter) Error(msg string, args ...any) { l.Log(hclog.Error, msg, msg, args...) }

// Log logs msg with args at level unless a message with the same key was
// logged less than the interval ago; then it only counts it. Use a key
// finer than msg when one message covers distinct problems (e.g. msg plus a
// status code); never a client-chosen value such as a path.
func (l *Limiter) Log(level hclog.Level, key, msg string, args ...any) {
	if lv := l.log.GetLevel(); level < lv || lv == hclog.Off {
		return
	}
	now := time.Now()
	l.mu.Lock()
	k := l.keys[key]
	if k != nil && now.Sub(k.last) < l.every && !l.stopped {
		k.suppressed++
		if k.timer == nil {
			k.timer = time.AfterFunc(k.last.Add(l.every).Sub(now), func() { l.report(key, k) })
		}
		l.mu.Unlock()
		return
	}
	if k == nil && l.makeRoom(now) {
		k = &limitKey{}
		l.keys[key] = k
	}
	var suppressed int
	if k != nil {
		suppressed = k.suppressed
		k.level, k.msg, k.last, k.suppressed = level, msg, now, 0
		if k.timer != nil {
			k.timer.Stop()
			k.timer = nil
		}
	}
	l.mu.Unlock()
	if suppressed > 0 {
		l.logSuppressed(level, msg, suppressed)
	}
	l.log.Log(level, msg, args...)
}

// report logs the count of messages suppressed for k during its interval.
func (l *Limiter) report(key string, k *limitKey) {
	l.mu.Lock()
	if l.keys[key] != k || k.suppressed == 0 {
		l.mu.Unlock()
		return
	}
	n, level, msg := k.suppressed, k.level, k.msg
	k.suppressed = 0
	k.timer = nil
	// The summary line opens a new interval: a message that keeps coming
	// gives one line and one summary per interval, not two lines.
	k.last = time.Now()
	l.mu.Unlock()
	l.logSuppressed(level, msg, n)
}

func (l *Limiter) logSuppressed(level hclog.Level, msg string, n int) {
	l.log.Log(level, strconv.Itoa(n)+" similar messages suppressed", "message", msg, "interval", l.every.String())
}

// makeRoom reports whether a new key fits, dropping keys idle for more than
// an interval when the map is full. l.mu is held.
func (l *Limiter) makeRoom(now time.Time) bool {
	if len(l.keys) < maxLimiterKeys {
		return true
	}
	for key, k := range l.keys {
		if now.Sub(k.last) >= l.every && k.timer == nil {
			delete(l.keys, key)
		}
	}
	return len(l.keys) < maxLimiterKeys
}

// Flush logs every pending suppressed count now and stops the timers; later
// messages are logged unlimited. Call it before the process exits.
func (l *Limiter) Flush() {
	l.mu.Lock()
	l.stopped = true
	type pending struct {
		level hclog.Level
		msg   string
		n     int
	}
	var ps []pending
	for _, k := range l.keys {
		if k.timer != nil {
			k.timer.Stop()
			k.timer = nil
		}
		if k.suppressed > 0 {
			ps = append(ps, pending{k.level, k.msg, k.suppressed})
			k.suppressed = 0
		}
	}
	l.mu.Unlock()
	for _, p := range ps {
		l.logSuppressed(p.level, p.msg, p.n)
	}
}

// Escape returns s (a path, a URI, a method) fit for a log line: control
// and non-UTF-8 bytes escaped as in a Go string literal, and cut to max
// bytes (200 if max <= 0), so a client can neither write lines of its own
// nor flood the log.
func Escape(s string, max int) string {
	if max <= 0 {
		max = 200
	}
	suffix := ""
	if len(s) > max {
		s, suffix = s[:max], fmt.Sprintf("...(%d bytes)", len(s))
	}
	q := strconv.Quote(s)
	return q[1:len(q)-1] + suffix
}
