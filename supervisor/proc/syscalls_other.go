//go:build linux && !amd64 && !arm64

package proc

// syscallName shows system calls by number on architectures without a
// table.
func syscallName(int) string { return "syscall" }
