package integration

import (
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// TestHardeningFDExhaustion (issue 7, HIGH 1): under a low descriptor limit,
// a flood of idle connections to the front and to the admin port makes
// accept fail with EMFILE. lanesd must keep running, count the failures,
// and serve again once the connections are gone.
func TestHardeningFDExhaustion(t *testing.T) {
	t.Parallel()
	// Go raises the soft limit to the hard one at start: ulimit -n lowers
	// both.
	l := startLanesdShell(t, "ulimit -n 256 &&", `
app {
  demo = true
}
lane "default" {
  min_workers = 2
}
`)
	l.mustGet(t, "/", 200)

	front := openIdle(t, l.Front, 1000)
	adm := openIdle(t, l.Admin, 400)
	time.Sleep(2 * time.Second) // accept loops run into EMFILE and back off
	if !l.Running() {
		t.Fatalf("lanesd exited under 1,400 idle connections: %v", l.Err())
	}
	for _, c := range append(front, adm...) {
		c.Close()
	}

	// The back-off is at most 1 s; the connections the kernel had queued
	// are accepted and closed first.
	var r result
	waitFor(t, "a GET to succeed after the flood", 20*time.Second, func() bool {
		r = l.get("/")
		return r.err == nil && r.status == 200
	})
	if !l.Running() {
		t.Fatalf("lanesd exited: %v", l.Err())
	}
	var fs *api.Front
	waitFor(t, "/api/status to answer", 20*time.Second, func() bool {
		fs, _ = l.tryFront()
		return fs != nil
	})
	if fs.AcceptErrors == 0 {
		t.Errorf("front.accept_errors = 0 after descriptor exhaustion")
	}
	t.Logf("accept_errors=%d", fs.AcceptErrors)
}
