package proc

import "time"

// Policy is how a Child supervises one kind of child of lanesd (lane
// workers, fetchd): how often its health is checked, how long a new
// process must live to be trusted, and how its restarts back off when it
// dies young again and again. Every kind uses the same rules; only the
// numbers differ.
type Policy struct {
	HealthInterval time.Duration
	// StableAfter is how long a process must have run for its death to
	// say nothing about the next one: after that, it is replaced at once.
	StableAfter time.Duration
	// Probation is how long a replacement (a drain, a recycle, a rollout
	// of a new binary) must stay up before the process it replaces leaves
	// rotation: one that dies just after its start must not cost the lane
	// the old one.
	Probation time.Duration
	// A crash loop: the first early death is restarted at once, later
	// ones after BackoffBase·2^(n-2), at most BackoffMax; LoopAt
	// consecutive early deaths are shown as a crash loop.
	BackoffBase, BackoffMax time.Duration
	LoopAt                  int
	// ExitGrace is how long a process that failed its health check is
	// given to exit by itself before the failure is reported: a dying
	// process fails its check too, and its death must count as a crash,
	// not as a kill (0: reported at once).
	ExitGrace time.Duration
	// StopTimeout bounds a graceful stop by the supervisor (a lane's
	// retiring worker, fetchd at shutdown) before the SIGKILL.
	StopTimeout time.Duration
}

// WorkerPolicy is the policy of lane workers; FetchdPolicy that of fetchd,
// whose back-off is capped lower (a fetchd that cannot start only costs
// theming) and which is killed at once when it fails a health check.
var (
	WorkerPolicy = Policy{
		HealthInterval: 5 * time.Second,
		StableAfter:    10 * time.Second,
		Probation:      time.Second,
		BackoffBase:    100 * time.Millisecond,
		BackoffMax:     30 * time.Second,
		LoopAt:         3,
		ExitGrace:      time.Second,
		StopTimeout:    10 * time.Second,
	}
	FetchdPolicy = Policy{
		HealthInterval: 5 * time.Second,
		StableAfter:    time.Minute,
		BackoffBase:    100 * time.Millisecond,
		BackoffMax:     10 * time.Second,
		LoopAt:         3,
		StopTimeout:    5 * time.Second,
	}
)

// CrashLoop counts the consecutive early deaths of one kind of child and
// says when the next may start. It counts loops, not crashes: a death that
// says nothing about the program (a process that served requests, a
// process that was stable) resets it. Not safe for concurrent use: its
// owner's lock guards it.
type CrashLoop struct {
	Policy Policy
	n      int
	last   time.Time // when n last grew
	until  time.Time // no start before this
	why    string
}

// Early records a death counted toward a loop (a process that failed to
// start, or died before it served anything and before StableAfter) and
// returns the back-off before the next start (0 for the first).
func (c *CrashLoop) Early(why string, now time.Time) time.Duration {
	c.n++
	c.last, c.why = now, why
	if c.n < 2 {
		return 0
	}
	d := c.Policy.BackoffBase << (c.n - 2)
	if d > c.Policy.BackoffMax || d <= 0 {
		d = c.Policy.BackoffMax
	}
	c.until = now.Add(d)
	return d
}

// Reset ends a loop: the next start is at once.
func (c *CrashLoop) Reset() { c.n, c.until = 0, time.Time{} }

// ResetIfStable ends a loop once a process started after its last early
// death has run for StableAfter (a stable sibling from before says
// nothing); it reports whether it did.
func (c *CrashLoop) ResetIfStable(ready, now time.Time) bool {
	if c.n == 0 || !ready.After(c.last) || now.Sub(ready) < c.Policy.StableAfter {
		return false
	}
	c.Reset()
	return true
}

// Count is the number of consecutive early deaths.
func (c *CrashLoop) Count() int { return c.n }

// Looping says the deaths are a crash loop (LoopAt or more).
func (c *CrashLoop) Looping() bool { return c.n >= c.Policy.LoopAt }

// Until is the earliest next start (zero: at once).
func (c *CrashLoop) Until() time.Time { return c.until }

// Last is the reason of the last early death.
func (c *CrashLoop) Last() string { return c.why }
