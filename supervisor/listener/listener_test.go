package listener

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// flaky fails Accept with errs in order, then accepts from the real listener.
type flaky struct {
	net.Listener
	errs []error
}

func (f *flaky) Accept() (net.Conn, error) {
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return nil, err
	}
	return f.Listener.Accept()
}

func accept4(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

func TestAcceptSurvivesDescriptorExhaustion(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := &flaky{Listener: ln, errs: []error{accept4(syscall.EMFILE), accept4(syscall.EMFILE), accept4(syscall.ENFILE), accept4(syscall.ECONNABORTED)}}
	l := Wrap(f, Options{Name: "test"})
	var slept []time.Duration
	l.sleep = func(d time.Duration) { slept = append(slept, d) }

	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept returned %v; want a connection after the temporary errors", err)
	}
	c.Close()
	if got := l.AcceptErrors(); got != 4 {
		t.Errorf("AcceptErrors = %d, want 4", got)
	}
	want := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
	if len(slept) != len(want) {
		t.Fatalf("slept %v, want %v", slept, want)
	}
	for i := range want {
		if slept[i] != want[i] {
			t.Errorf("back-off %d = %v, want %v", i, slept[i], want[i])
		}
	}
}

func TestAcceptReturnsWhenClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Wrap(ln, Options{})
	ln.Close()
	if _, err := l.Accept(); err == nil || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener = %v, want net.ErrClosed", err)
	}
}

func TestMaxConnsClosesExtraConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l := Wrap(ln, Options{MaxConns: 2})
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first, second := <-accepted, <-accepted
	// The third is closed by the listener: the client reads EOF or a reset
	// (which may already fail the dial).
	if third, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		defer third.Close()
		third.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := third.Read(make([]byte, 1)); err == nil {
			t.Fatal("third connection readable; want it closed by the cap")
		}
	}
	waitForCount := time.Now().Add(2 * time.Second)
	for l.OverCap() != 1 && time.Now().Before(waitForCount) {
		time.Sleep(5 * time.Millisecond)
	}
	if l.OverCap() != 1 || l.Open() != 2 {
		t.Fatalf("over cap %d, open %d; want 1, 2", l.OverCap(), l.Open())
	}
	// Closing one frees its slot once, however often it is closed.
	first.Close()
	first.Close()
	if l.Open() != 1 {
		t.Fatalf("open after close = %d, want 1", l.Open())
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case fourth := <-accepted:
		fourth.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("a connection after a slot freed was not accepted")
	}
	second.Close()
}
