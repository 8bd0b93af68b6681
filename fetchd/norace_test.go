//go:build !race

package fetchd

const raceEnabled = false
