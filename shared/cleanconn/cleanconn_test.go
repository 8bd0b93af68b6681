package cleanconn

import (
	"net"
	"syscall"
	"testing"
	"time"
)

func TestTrackerClean(t *testing.T) {
	const get, head = "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"
	for _, tc := range []struct {
		name, req string
		chunks    []string
		clean     bool
	}{
		{"length", get, []string{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"}, true},
		{"length, split everywhere", get, []string{"HTTP/1.1 2", "00 OK\r", "\nContent-Len", "gth:  5 \r\n\r", "\nhel", "lo"}, true},
		{"length short", get, []string{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello!"}, false},
		{"length short, next read", get, []string{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "!"}, false},
		{"body not ended", get, []string{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhell"}, false},
		{"two lengths", get, []string{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"}, false},
		{"no framing", get, []string{"HTTP/1.1 200 OK\r\n\r\nhello"}, false},
		{"empty body", get, []string{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}, true},
		{"HEAD", head, []string{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"}, true},
		{"HEAD with a body", head, []string{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"}, false},
		{"204", get, []string{"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"}, true},
		{"204 with a body", get, []string{"HTTP/1.1 204 No Content\r\n\r\nx"}, false},
		{"304 with a body", get, []string{"HTTP/1.1 304 Not Modified\r\nContent-Length: 1\r\n\r\nx"}, false},
		{"interim", get, []string{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}, true},
		{"chunked", get, []string{"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n5;x=y\r\nhel", "lo\r\nA\r\n0123456789\r\n0\r\n\r\n"}, true},
		{"chunked with trailers", get, []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n"}, true},
		{"chunked, then more", get, []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"}, false},
		{"chunk data overrun", get, []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokk\r\n0\r\n\r\n"}, false},
		{"chunked wins over length", get, []string{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"}, true},
		{"unknown coding", get, []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"}, false},
		{"HTTP/1.0 ignores transfer-encoding", get, []string{"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nok"}, true},
		{"long header line", get, []string{"HTTP/1.1 200 OK\r\nX-Long: " + string(make([]byte, 200)) + "\r\nContent-Length: 2\r\n\r\nok"}, true},
		{"not HTTP", get, []string{"SSH-2.0-OpenSSH\r\n"}, false},
	} {
		var tr Tracker
		if !tr.Write([]byte(tc.req)) {
			t.Fatalf("%s: a fresh connection is not fit", tc.name)
		}
		for _, ch := range tc.chunks {
			tr.Read([]byte(ch))
		}
		if got := tr.Clean(); got != tc.clean {
			t.Errorf("%s: Clean() = %v, want %v", tc.name, got, tc.clean)
		}
		if got := tr.Write([]byte(tc.req)); got != tc.clean {
			t.Errorf("%s: the next request's Write = %v, want %v", tc.name, got, tc.clean)
		}
	}
}

// Pending sees a byte or the peer's close on an idle socket, and takes
// nothing.
func TestPending(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var tr Tracker
	tr.Attach(raw)
	if tr.Pending() {
		t.Fatal("Pending on a quiet socket")
	}
	if allocs := testing.AllocsPerRun(100, func() { tr.Pending() }); allocs != 0 {
		t.Errorf("Pending allocates %v times", allocs)
	}
	peer.Write([]byte("x"))
	waitFor(t, tr.Pending)
	b := make([]byte, 2)
	if n, err := c.Read(b); n != 1 || err != nil {
		t.Fatalf("the peeked byte: %d, %v", n, err)
	}
	if tr.Pending() {
		t.Fatal("Pending after the byte was read")
	}
	peer.Close()
	waitFor(t, tr.Pending)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition never met")
		}
		time.Sleep(time.Millisecond)
	}
}
