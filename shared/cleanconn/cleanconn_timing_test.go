package cleanconn

import (
	"net"
	"syscall"
	"testing"
)

// BenchmarkTracker is what a request on a reused connection adds: the
// framing followed through a small answer, and the peek at the idle socket
// (one recvfrom), apart and together.
func BenchmarkTracker(b *testing.B) {
	req := []byte("GET /small?q=1 HTTP/1.1\r\nHost: upstream\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nServer: fasthttp\r\nDate: Fri, 04 Dec 2026 11:45:46 GMT\r\n" +
		"Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	peer, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer peer.Close()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		b.Fatal(err)
	}

	b.Run("framing", func(b *testing.B) {
		var tr Tracker
		tr.Attach(nil)
		b.ReportAllocs()
		for b.Loop() {
			if !tr.Write(req) {
				b.Fatal("not clean")
			}
			tr.Read(resp)
		}
	})
	b.Run("peek", func(b *testing.B) {
		var tr Tracker
		tr.Attach(raw)
		b.ReportAllocs()
		for b.Loop() {
			if tr.Pending() {
				b.Fatal("pending")
			}
		}
	})
	b.Run("both", func(b *testing.B) {
		var tr Tracker
		tr.Attach(raw)
		b.ReportAllocs()
		for b.Loop() {
			if !tr.Write(req) {
				b.Fatal("not clean")
			}
			tr.Read(resp)
		}
	})
}
