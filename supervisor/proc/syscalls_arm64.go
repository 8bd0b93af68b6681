//go:build linux

package proc

// syscallName names the arm64 system calls a hung Go or proxy worker is
// usually found in; others are shown by number. arm64 has no poll, select
// or epoll_wait: only their p-variants.
func syscallName(n int) string {
	switch n {
	case 22:
		return "epoll_pwait"
	case 63:
		return "read"
	case 64:
		return "write"
	case 72:
		return "pselect6"
	case 73:
		return "ppoll"
	case 98:
		return "futex"
	case 101:
		return "nanosleep"
	case 115:
		return "clock_nanosleep"
	case 202:
		return "accept"
	case 207:
		return "recvfrom"
	case 242:
		return "accept4"
	}
	return "syscall"
}
