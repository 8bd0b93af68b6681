//go:build !linux

package fetchd

import "unsafe"

// Off Linux, where lanes does not run, the value log stays mapped.

func mappedBy(v []byte) (uintptr, int64) {
	if len(v) == 0 {
		return 0, 0
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(v))), int64(len(v))
}

func unmapValueLog(string, []uintptr) error { return nil }
