package lane

import (
	"strings"
)

// where names the frames a hung Go worker's handler was in, from the
// goroutine dump its SIGQUIT printed: the goroutine serving a connection
// (it runs fasthttp's serveConn) whose top frames are the handler's rather
// than a read waiting for the next request; its first frames outside the
// runtime and the standard library's plumbing, innermost first, at most
// three, each with its file:line. "" when no such goroutine is found (a
// program that is not Go, a dump cut short).
func where(stacks string) string {
	for _, g := range strings.Split(stacks, "\n\n") {
		if !strings.Contains(g, "fasthttp.(*Server).serveConn") {
			continue
		}
		lines := strings.Split(strings.TrimSpace(g), "\n")
		var frames []string
		for i := 1; i+1 < len(lines); i += 2 {
			fn := lines[i]
			if p := strings.LastIndexByte(fn, '('); p > 0 {
				fn = fn[:p]
			}
			if fn == "" || plumbing(fn) {
				continue
			}
			if strings.HasPrefix(fn, "github.com/valyala/fasthttp.") || strings.HasPrefix(fn, "github.com/lanes-dev/lanes/worker.") {
				break // below the handler: what serves it
			}
			loc := strings.TrimSpace(lines[i+1])
			if sp := strings.IndexByte(loc, ' '); sp > 0 {
				loc = loc[:sp]
			}
			frames = append(frames, fn+" ("+loc+")")
			if len(frames) == 3 {
				break
			}
		}
		if len(frames) > 0 {
			return strings.Join(frames, " < ")
		}
		// An idle connection's goroutine, waiting for its next request.
	}
	return ""
}

// plumbing says fn belongs to the runtime or to the standard library's
// waiting and copying, not to a handler.
func plumbing(fn string) bool {
	for _, p := range []string{"runtime.", "sync.", "internal/", "syscall.", "time.", "net.", "bufio.", "io.", "os.", "context.",
		"github.com/lanes-dev/lanes/shared/heldconn.", "github.com/lanes-dev/lanes/worker/internal/"} {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}
