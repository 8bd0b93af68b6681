package systemd

import (
	"errors"
	"fmt"
	"net"

	"github.com/coreos/go-systemd/v22/activation"
)

// The socket names (FileDescriptorName= in a .socket unit) lanesd takes.
const (
	FrontName = "front"
	AdminName = "admin"
)

// Listeners are the listening sockets systemd passed; a nil one is bound
// from the config as usual.
type Listeners struct {
	Front, Admin net.Listener
}

// Any says whether systemd passed a socket.
func (l Listeners) Any() bool { return l.Front != nil || l.Admin != nil }

// Close closes what l holds (systemd keeps its own copies).
func (l Listeners) Close() {
	for _, ln := range []net.Listener{l.Front, l.Admin} {
		if ln != nil {
			ln.Close()
		}
	}
}

// TakeListeners takes the sockets of socket activation when LISTEN_PID is
// this process and LISTEN_FDS ≥ 1, by their LISTEN_FDNAMES: "front" and
// "admin". It clears LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from the
// environment in any case, and marks the descriptors close-on-exec, so no
// child of lanesd inherits them. Call it before any child starts. A socket
// of another name, two of one name, or one that is not a listening socket
// is an error: lanesd would otherwise leave a port of the unit unserved.
func TakeListeners() (Listeners, error) {
	var l Listeners
	var errs []error
	for _, f := range activation.Files(true) {
		fd := f.Fd()
		ln, err := net.FileListener(f) // a dup; f's own descriptor closes now
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("socket %q (fd %d) is not a listening socket: %w", f.Name(), fd, err))
			continue
		}
		var slot *net.Listener
		switch f.Name() {
		case FrontName:
			slot = &l.Front
		case AdminName:
			slot = &l.Admin
		default:
			errs = append(errs, fmt.Errorf("socket %q (%s): lanesd takes sockets named %q and %q (FileDescriptorName= in the .socket unit)", f.Name(), ln.Addr(), FrontName, AdminName))
		}
		switch {
		case slot == nil:
			ln.Close()
		case *slot != nil:
			errs = append(errs, fmt.Errorf("two sockets named %q (%s and %s); lanesd takes one", f.Name(), (*slot).Addr(), ln.Addr()))
			ln.Close()
		default:
			*slot = ln
		}
	}
	if err := errors.Join(errs...); err != nil {
		l.Close()
		return Listeners{}, fmt.Errorf("systemd socket activation: %w", err)
	}
	return l, nil
}
