// Package systemd is lanesd's side of the systemd service protocol: the
// sd_notify(3) messages (READY=1, RELOADING=1, STOPPING=1, STATUS=,
// WATCHDOG=1) and socket activation (sd_listen_fds(3)) of the front and
// admin listeners. The wire work is github.com/coreos/go-systemd's; this
// package decides what lanesd says, and when. Outside systemd (no
// NOTIFY_SOCKET, no LISTEN_FDS) it does nothing.
package systemd

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/logging"
)

// statusEvery is how often Run refreshes STATUS= when there is no watchdog
// to set the pace.
const statusEvery = 10 * time.Second

// Notifier sends lanesd's state to the service manager on NOTIFY_SOCKET.
// A nil Notifier, or one made without NOTIFY_SOCKET, sends nothing. Its
// methods are safe for concurrent use.
type Notifier struct {
	log      hclog.Logger
	enabled  bool
	watchdog time.Duration // WATCHDOG_USEC meant for this process; 0: none
	warned   atomic.Bool   // a refused message is logged once
}

// NewNotifier reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID. They
// stay in the environment: go-systemd reads NOTIFY_SOCKET at every message,
// and package lane keeps all three from exec workers, which may speak
// sd_notify themselves.
func NewNotifier(log hclog.Logger) *Notifier {
	n := &Notifier{log: log.Named("systemd"), enabled: os.Getenv("NOTIFY_SOCKET") != ""}
	if !n.enabled {
		return n
	}
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn("ignoring the watchdog setting", "error", err)
	}
	n.watchdog = wd
	return n
}

// Enabled says whether n talks to a service manager.
func (n *Notifier) Enabled() bool { return n != nil && n.enabled }

// Watchdog is the watchdog timeout systemd set for lanesd, or 0.
func (n *Notifier) Watchdog() time.Duration {
	if !n.Enabled() {
		return 0
	}
	return n.watchdog
}

// Ready says lanesd serves: at start once the listeners accept and the
// lanes are up, and at the end of every reload, refused ones included (the
// running config stays). MONOTONIC_USEC goes with it as with RELOADING=1,
// where Type=notify-reload (systemd ≥ 253) reads it; elsewhere it is
// ignored.
func (n *Notifier) Ready(status string) {
	n.send("READY=1", monotonic(), "STATUS="+oneLine(status))
}

// Reloading says a reload has begun; Ready must follow.
func (n *Notifier) Reloading() {
	n.send("RELOADING=1", monotonic(), "STATUS=reloading the config")
}

// Stopping says lanesd has begun to stop.
func (n *Notifier) Stopping(status string) {
	n.send("STOPPING=1", "STATUS="+oneLine(status))
}

// Status replaces the one-line status systemctl status shows.
func (n *Notifier) Status(status string) { n.send("STATUS=" + oneLine(status)) }

// Run keeps the service manager informed until ctx ends. Every half
// WATCHDOG_USEC (every statusEvery without a watchdog) it calls probe,
// which looks at the running supervisor and summarises it. Only a probe
// that has come back sends WATCHDOG=1: a supervisor wedged on a lock
// stops the pings, and systemd restarts it (WatchdogSec=). STATUS= is
// sent when the summary changes.
func (n *Notifier) Run(ctx context.Context, probe func() string) {
	if !n.Enabled() {
		return
	}
	every := statusEvery
	if n.watchdog > 0 {
		every = n.watchdog / 2
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var last string
	var inflight chan string // a probe not back yet; nil: none
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if inflight == nil {
			inflight = make(chan string, 1)
			go func(c chan<- string) { c <- probe() }(inflight)
		}
		wait := time.NewTimer(every / 2)
		select {
		case <-ctx.Done():
			wait.Stop()
			return
		case status := <-inflight:
			wait.Stop()
			inflight = nil
			if n.watchdog > 0 {
				n.send("WATCHDOG=1")
			}
			if status != last {
				n.Status(status)
				last = status
			}
		case <-wait.C:
			n.log.Warn("the supervisor did not answer its probe; no watchdog ping", "waited", logging.Dur(every/2))
		}
	}
}

// send writes one datagram of lines.
func (n *Notifier) send(lines ...string) {
	if !n.Enabled() {
		return
	}
	msg := strings.Join(lines, "\n")
	if _, err := daemon.SdNotify(false, msg); err != nil {
		if !n.warned.Swap(true) {
			n.log.Warn("cannot notify the service manager (NOTIFY_SOCKET); further failures are not logged", "error", err)
		}
		return
	}
	n.log.Trace("notified", "message", msg)
}

// monotonic is the MONOTONIC_USEC= line, without go-systemd's newline.
func monotonic() string { return strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n") }

// oneLine keeps a status to one line: a newline would start a new
// assignment.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
