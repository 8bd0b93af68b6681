package shared

import (
	"os"
	"testing"
)

// RSS reads /proc/PID/statm; a process that does not exist is an error,
// not a size of 0.
func TestRSS(t *testing.T) {
	if n := SelfRSS(); n <= 0 {
		t.Errorf("SelfRSS: %d", n)
	}
	if n, err := RSS(os.Getpid()); err != nil || n <= 0 {
		t.Errorf("RSS(self): %d, %v", n, err)
	}
	if n, err := RSS(1 << 30); err == nil {
		t.Errorf("RSS of no process: %d, no error", n)
	}
}
