//go:build race

package front

// raceEnabled: the race detector is on, and sync.Pool drops what it is
// given at random, so pooled paths allocate.
const raceEnabled = true
