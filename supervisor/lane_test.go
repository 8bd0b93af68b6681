package supervisor

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/supervisor/lane"
	"github.com/lanes-dev/lanes/supervisor/proc"
)

func laneStatus(s *Supervisor, name string) api.Lane {
	if l := s.state.Load().lane(name); l != nil {
		return l.Status()
	}
	return api.Lane{}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop whose context has ended while a worker is still starting must not
// touch that worker's fields (run() is writing them), and the worker must
// still die: a Kill before the fork is remembered and applied to the
// process as soon as it is forked.
func TestStopWithExpiredContextWhileStarting(t *testing.T) {
	dir := t.TempDir()
	l := lane.New(config.Lane{
		Name: "s", MinWorkers: 1, MaxWorkers: 1, Concurrency: 1, MaxQueue: 1,
		QueueTimeout: time.Second, RequestTimeout: time.Second,
		Command: []string{"/bin/sh", "-c", "sleep 0.3; exec \"$0\"", helloWorker},
	}, lane.Env{Spawner: proc.NewSpawner(), RunDir: dir, Log: hclog.NewNullLogger()})
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	go func() { _ = l.Start(sctx) }()
	time.Sleep(100 * time.Millisecond) // the worker is in its handshake
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stopped := make(chan struct{})
	go func() { l.Stop(ctx, false); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("Stop did not return")
	}
	if ws := l.Status().Workers; len(ws) != 0 {
		t.Errorf("workers left after Stop: %+v", ws)
	}
}
