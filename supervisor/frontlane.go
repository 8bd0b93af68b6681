package supervisor

import (
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/supervisor/front"
	"github.com/lanes-dev/lanes/supervisor/lane"
)

// newFront makes the front of cfg (its front block is fixed while lanesd
// runs): it reads the current state's snapshot, and hands each finished
// request to the metrics and each request that leaves a lane to the
// retiring lanes.
func (s *Supervisor) newFront(cfg *config.Config) *front.Front {
	return front.New(front.Options{
		Config:   cfg.Front,
		Log:      s.log,
		Warn:     s.warn,
		RunDir:   s.runDir,
		Snapshot: func() *front.Snapshot { return s.state.Load().front },
		Observe:  s.metrics.observe,
		Ended: func(l front.Lane) {
			if fl, ok := l.(frontLane); ok {
				s.retiring.ended(fl.Lane)
			}
		},
	})
}

// frontLane is a lane as the front sees it: the same lane, whose Acquire
// hands out the worker as the request's front.Slot.
type frontLane struct{ *lane.Lane }

func (l frontLane) Acquire() (front.Slot, error) {
	w, err := l.Lane.Acquire()
	if err != nil {
		return nil, err
	}
	return w, nil
}

var (
	_ front.Lane = frontLane{}
	_ front.Slot = (*lane.Worker)(nil)
)
