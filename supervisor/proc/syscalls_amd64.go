//go:build linux

package proc

// syscallName names the x86-64 system calls a hung Go or proxy worker is
// usually found in; others are shown by number.
func syscallName(n int) string {
	switch n {
	case 0:
		return "read"
	case 1:
		return "write"
	case 7:
		return "poll"
	case 23:
		return "select"
	case 35:
		return "nanosleep"
	case 43:
		return "accept"
	case 45:
		return "recvfrom"
	case 202:
		return "futex"
	case 230:
		return "clock_nanosleep"
	case 232:
		return "epoll_wait"
	case 270:
		return "pselect6"
	case 271:
		return "ppoll"
	case 281:
		return "epoll_pwait"
	case 288:
		return "accept4"
	}
	return "syscall"
}
