package lanestest

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Log keeps everything a process writes, and wakes a waiter on every
// write.
type Log struct {
	mu      sync.Mutex
	b       bytes.Buffer
	partial []byte            // the line being written, for watch
	watch   func(line string) // sees every whole line; set before the process starts
	out     io.Writer         // gets a copy of every write, when set
	wrote   chan struct{}
}

func newLog(out io.Writer, watch func(string)) *Log {
	return &Log{out: out, watch: watch, wrote: make(chan struct{}, 1)}
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	var lines []string
	if l.watch != nil {
		l.partial = append(l.partial, p...)
		for {
			i := bytes.IndexByte(l.partial, '\n')
			if i < 0 {
				break
			}
			lines = append(lines, string(l.partial[:i]))
			l.partial = l.partial[i+1:]
		}
	}
	l.mu.Unlock()
	for _, line := range lines {
		l.watch(line)
	}
	if l.out != nil {
		_, _ = l.out.Write(p)
	}
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

// String is everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Wrote receives after a write (one value for any number of writes since
// the last receive).
func (l *Log) Wrote() <-chan struct{} { return l.wrote }

// Count counts the occurrences of s in the log so far.
func (l *Log) Count(s string) int { return strings.Count(l.String(), s) }

// follower copies what a process appends to its log file into a Log,
// polling, until stop is closed: a log file is read only until lanesd
// listens, so that reading it costs nothing under load, and the rest is
// read by CatchUp once the load is over.
type follower struct {
	file     string
	log      *Log
	stop     chan struct{}
	stopOnce sync.Once

	mu  sync.Mutex
	off int64
}

func (f *follower) run() {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		f.read()
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
	}
}

// read copies whatever was appended since the last read.
func (f *follower) read() {
	f.mu.Lock()
	defer f.mu.Unlock()
	fh, err := os.Open(f.file)
	if err != nil {
		return
	}
	defer fh.Close()
	if _, err := fh.Seek(f.off, io.SeekStart); err != nil {
		return
	}
	n, _ := io.Copy(f.log, fh)
	f.off += n
}
