//go:build race

package fetchd

// raceEnabled: the race detector multiplies a process's memory.
const raceEnabled = true
