package lane

import (
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/supervisor/proc"
)

// State is where a worker process is in its life.
type State int

const (
	Starting State = iota // forked, handshaking
	Ready                 // in rotation
	Retiring              // out of rotation; stopped gracefully once idle (drain, recycle, shrink)
	Killing               // out of rotation after a hard timeout or a failed health check; killed once its other requests end
	Stopping              // lane shutdown
	Dead                  // exited and reaped
)

// String returns the state's name as the admin API shows it.
func (s State) String() string {
	switch s {
	case Starting:
		return "starting"
	case Ready:
		return "ready"
	case Retiring:
		return "retiring"
	case Killing:
		return "killing"
	case Stopping:
		return "stopping"
	case Dead:
		return "dead"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// states lists every State, for counts by state.
var states = [...]State{Starting, Ready, Retiring, Killing, Stopping, Dead}

// Proc is a worker process as the lane sees it: what its proc.Child
// supervises, plus the data socket and the two-phase kill of a hung
// worker. Package proc's Process and ExecProcess, or a fake in the lane's
// unit tests.
type Proc interface {
	proc.Proc
	Socket() string
	Quit(grace time.Duration, max int) string
	WhereHung() (wchan, sysc string)
}

var (
	_ Proc = (*proc.Process)(nil)
	_ Proc = (*proc.ExecProcess)(nil)
)

// Worker is one worker process of a lane. Its state and counters are
// guarded by the lane's mutex.
type Worker struct {
	lane    *Lane
	seq     int
	proc    Proc
	child   *proc.Child // supervises proc: start, exit, health checks
	hc      *fasthttp.HostClient
	started time.Time
	pid     int // set when it leaves Starting
	// conc is the worker's request slots, fixed when it is spawned: its
	// data client holds that many connections, so a reload that raises
	// the lane's concurrency applies to the workers the drain starts, not
	// to the old ones still serving meanwhile.
	conc int
	exec bool // a program of any language (fixed at spawn)

	// guarded by lane.mu
	state       State
	ready       time.Time
	inflight    int
	served      uint64
	answered    uint64 // requests it answered whole: proof that the program works
	maxServed   uint64 // recycle after this many requests (0: never)
	rss         int64
	goroutines  int       // as of the last health check
	allocs      uint64    // heap objects allocated, as of the last health check
	suspect     bool      // a request failed on its data plane: not picked until a health check clears it
	idleSince   time.Time // when inflight last dropped to 0
	replacement *Worker   // a worker starting to take this one's place (drain, recycle)
	replaces    *Worker   // the worker this one takes the place of
	why         string    // why it is retiring or being killed
	hung        *hungRequest
}

// hungRequest is the request that condemned a worker, for the kill's log
// record.
type hungRequest struct {
	method, path   string
	queue, run     time.Duration
	wchan, syscall string
}

// PID returns the worker's process id.
func (w *Worker) PID() int { return w.pid }

// Exec says the worker is an exec worker: a program of any language,
// whose answers the front treats as an upstream's.
func (w *Worker) Exec() bool { return w.exec }

// execMaxIdle is how long an idle data connection to an exec worker is
// kept: below the common keep-alive timeouts of app servers.
const execMaxIdle = time.Second

// newDataClient returns the data-plane client of a worker serving on sock.
// Idle connections are closed after 30 s: fasthttp's cleaner goroutine of
// a dead worker's client sleeps that long before it notices and leaves.
func newDataClient(sock string, conc int) *fasthttp.HostClient {
	return dataClient("unix", sock, conc, 30*time.Second)
}

// dataClient returns the data-plane client of a worker serving at addr
// (a unix socket, or 127.0.0.1:PORT for an exec worker in port mode).
func dataClient(network, addr string, conc int, maxIdle time.Duration) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr: addr,
		Dial: func(string) (net.Conn, error) {
			return dialData(func() (net.Conn, error) { return net.DialTimeout(network, addr, time.Second) })
		},
		// Admission already caps requests at concurrency; the slack covers
		// connections still closing.
		MaxConns:                      conc + 2,
		MaxIdemponentCallAttempts:     1,
		RetryIfErr:                    func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		StreamResponseBody:            true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		MaxIdleConnDuration:           maxIdle,
		ReadBufferSize:                32 << 10,
	}
}

// truncated says resp's streamed chunked body ended in io.EOF only because
// its worker closed the connection before the terminating chunk: the body
// is cut short, not complete.
func truncated(resp *fasthttp.Response) bool {
	c, ok := resp.LocalAddr().(*dataConn)
	return ok && resp.Header.ContentLength() == -1 && c.closed.Load()
}
