package fetchd

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Badger v4 reads and writes its value log only through shared memory
// maps (its FileIO mode went in badger#1555), so every page fetchd stored
// or served would stay in its resident set until the kernel needed the
// memory: 50 MB for 1,000 pages of 50 KB. unmapValueLog takes them out of
// fetchd's page tables again; the Cache calls it when the pages it touched
// add up (Cache.touched) and after badger touched the log by itself
// (opening, value-log GC).

// faultAround is the span around a faulting address that Linux maps in
// one go from the page cache (fault_around_bytes, 64 KB by default): what
// reading a value maps beyond the value itself.
const faultAround = 64 << 10

// mappedBy is the address of v and what reading it all maps, at most.
func mappedBy(v []byte) (addr uintptr, size int64) {
	if len(v) == 0 {
		return 0, 0
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
	hi := lo + uintptr(len(v))
	return lo, int64((hi+faultAround-1)&^(faultAround-1) - lo&^(faultAround-1))
}

// unmapValueLog drops from this process's page tables every shared mapping
// of a value-log file in dir that holds one of the addresses in touched
// (every one when touched is nil), with MADV_DONTNEED: on a shared file
// mapping that drops page-table entries only, the data stays in the page
// cache (the next read of it is a minor fault, not a disk read) and a dirty
// page keeps its data for writeback.
//
// The caller must keep badger from unmapping or remapping value-log files
// meanwhile, or the advice could land on memory mapped again at the same
// addresses: in badger v4.9 that happens only inside calls the Cache makes
// (writes, value-log GC, iterators closing, Close), so the Cache holds mu
// write-locked. Recheck this when upgrading badger.
func unmapValueLog(dir string, touched []uintptr) error {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s, e, ok := valueLogMapping(sc.Bytes(), dir)
		if !ok || !holdsAny(s, e, touched) {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, s, e-s, unix.MADV_DONTNEED); errno != 0 {
			return errno
		}
	}
	return sc.Err()
}

func holdsAny(start, end uintptr, addrs []uintptr) bool {
	if addrs == nil {
		return true
	}
	for _, a := range addrs {
		if start <= a && a < end {
			return true
		}
	}
	return false
}

// valueLogMapping parses one line of /proc/self/maps
// ("START-END PERMS OFFSET DEV INODE PATH") and reports whether it is a
// shared mapping of a value-log file directly in dir.
func valueLogMapping(line []byte, dir string) (start, end uintptr, ok bool) {
	var f [5][]byte
	rest := line
	for i := range f {
		rest = bytes.TrimLeft(rest, " ")
		n := bytes.IndexByte(rest, ' ')
		if n < 0 {
			return 0, 0, false
		}
		f[i], rest = rest[:n], rest[n:]
	}
	// The path is the rest of the line; it may hold spaces.
	path := string(bytes.TrimLeft(rest, " "))
	if len(f[1]) < 4 || f[1][3] != 's' || filepath.Ext(path) != ".vlog" || filepath.Dir(path) != dir {
		return 0, 0, false
	}
	lo, hi, found := bytes.Cut(f[0], []byte("-"))
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(string(lo), 16, 64)
	e, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}
