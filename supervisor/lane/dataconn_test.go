package lane

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/heldconn"
)

// unixPair returns a dataConn dialled to a unix listener and the accepted
// end of it.
func unixPair(t *testing.T) (*dataConn, net.Conn) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	d := newDataConn(c)
	t.Cleanup(func() { d.Close(); peer.Close() })
	if !d.Holding() {
		t.Fatal("no RawConn on a unix socket")
	}
	return d, peer
}

// A held write goes out with the Read that waits for its answer, and the
// answer comes back whole.
func TestDataConnHeldWrite(t *testing.T) {
	d, peer := unixPair(t)
	if _, err := d.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	go func() {
		b := make([]byte, 4)
		if _, err := io.ReadFull(peer, b); err == nil && string(b) == "ping" {
			peer.Write([]byte("pong"))
		}
	}()
	b := make([]byte, 16)
	n, err := d.Read(b)
	if err != nil || string(b[:n]) != "pong" {
		t.Fatalf("read %q, %v", b[:n], err)
	}
	// Two writes in a row: the first goes out when the second comes; a
	// write above heldconn.Max goes out at once.
	big := make([]byte, heldconn.Max+1)
	if _, err := d.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		b := make([]byte, 1+len(big))
		_, err := io.ReadFull(peer, b)
		done <- err
	}()
	if _, err := d.Write(big); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A worker that closed the connection fails the held write in the Read;
// the request counts as never delivered.
func TestDataConnPeerGone(t *testing.T) {
	d, peer := unixPair(t)
	peer.Close()
	time.Sleep(10 * time.Millisecond)
	if _, err := d.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_, err := d.Read(make([]byte, 16))
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("read error %v, want a write OpError", err)
	}
	if !d.SendFailed() || !d.closed.Load() {
		t.Fatalf("sendFailed %v closed %v, want both", d.SendFailed(), d.closed.Load())
	}
}

// The read deadline bounds the wait for an answer, as net's Read does.
func TestDataConnDeadline(t *testing.T) {
	d, _ := unixPair(t)
	d.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := d.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_, err := d.Read(make([]byte, 16))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read error %v, want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("read error %v, want a read OpError", err)
	}
	if d.SendFailed() {
		t.Fatal("the request was sent; sendFailed set")
	}
}

// EOF from a worker that closes after its answer reads as io.EOF.
func TestDataConnEOF(t *testing.T) {
	d, peer := unixPair(t)
	if _, err := d.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	go func() {
		b := make([]byte, 1)
		io.ReadFull(peer, b)
		peer.Close()
	}()
	if _, err := d.Read(make([]byte, 16)); err != io.EOF {
		t.Fatalf("read error %v, want io.EOF", err)
	}
	if d.SendFailed() {
		t.Fatal("sendFailed after a delivered request")
	}
}
