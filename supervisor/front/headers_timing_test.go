package front

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkPrepare is what prepare adds to a small GET on the front's hot
// path (a browser-like header section).
func BenchmarkPrepare(b *testing.B) {
	raw := "GET /static/app.js?v=3 HTTP/1.1\r\nHost: site.example\r\nUser-Agent: Mozilla/5.0\r\n" +
		"Accept: */*\r\nAccept-Language: en\r\nAccept-Encoding: gzip, br\r\nCookie: sid=abc; theme=dark\r\n" +
		"Connection: keep-alive\r\nReferer: http://site.example/\r\n\r\n"
	var req fasthttp.Request
	req.Header.DisableNormalizing()
	ip := net.IPv4(10, 1, 2, 3)
	var f forward
	b.ReportAllocs()
	for b.Loop() {
		req.Reset()
		req.Header.DisableNormalizing()
		if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			b.Fatal(err)
		}
		if r := prepare(&req, ip, &f); r != nil {
			b.Fatal(r.msg)
		}
	}
}

// BenchmarkParseOnly is BenchmarkPrepare's baseline: the parse alone.
func BenchmarkParseOnly(b *testing.B) {
	raw := "GET /static/app.js?v=3 HTTP/1.1\r\nHost: site.example\r\nUser-Agent: Mozilla/5.0\r\n" +
		"Accept: */*\r\nAccept-Language: en\r\nAccept-Encoding: gzip, br\r\nCookie: sid=abc; theme=dark\r\n" +
		"Connection: keep-alive\r\nReferer: http://site.example/\r\n\r\n"
	var req fasthttp.Request
	b.ReportAllocs()
	for b.Loop() {
		req.Reset()
		req.Header.DisableNormalizing()
		if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			b.Fatal(err)
		}
	}
}
