package worker

import "testing"

// The health check's allocation count comes from runtime/metrics; a
// renamed metric would make it 0 for ever.
func TestHeapAllocs(t *testing.T) {
	a := heapAllocs()
	for i := range sinks {
		sinks[i] = make([]byte, 64)
	}
	if b := heapAllocs(); a == 0 || b < a+uint64(len(sinks)/2) {
		t.Errorf("heapAllocs: %d, then %d after %d allocations", a, b, len(sinks))
	}
}

var sinks [10000][]byte
