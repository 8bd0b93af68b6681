// Command testworker is the custom lanes worker the tests run: a Go
// worker on worker.Serve whose paths misbehave on purpose (a panic, an
// answer cut short, a chunked body cut between chunks, an exit in the
// middle of a response) or echo what reached it. examples/hello-worker is
// the minimal one to read.
package main

import (
	"bufio"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/worker"
)

func main() {
	if b := os.Getenv("TESTWORKER_BANNER"); b != "" {
		fmt.Println(b) // on stdout, before the handshake, as careless programs do
	}
	err := worker.Serve(func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/hello/panic":
			panic("hello-worker: asked to panic")
		case "/hello/partial":
			// Promise 1000 bytes, send 10, then exit or hang: a worker
			// failing in the middle of a response. The raw write makes
			// sure the status line and the 10 bytes have left.
			then := string(ctx.QueryArgs().Peek("then"))
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(c net.Conn) {
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789"))
				time.Sleep(100 * time.Millisecond)
				if then == "exit" {
					os.Exit(1)
				}
				select {}
			})
			return
		case "/hello/chunked-cut":
			// A chunked response whose worker exits after two chunks, or
			// in the middle of the third (?at=inside): the end of the body
			// never comes.
			inside := string(ctx.QueryArgs().Peek("at")) == "inside"
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(c net.Conn) {
				msg := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n"
				if inside {
					msg += "10\r\nhalf a c"
				}
				_, _ = c.Write([]byte(msg))
				time.Sleep(100 * time.Millisecond)
				os.Exit(1)
			})
			return
		case "/hello/echo":
			// What the worker got: the target, the header section as it
			// came, and the body's length.
			body := ctx.PostBody()
			fmt.Fprintf(ctx, "target: %s\n%sbody: %d\n", ctx.RequestURI(), ctx.Request.Header.RawHeaders(), len(body))
			return
		case "/hello/stream":
			// A body of unknown length, which the front spools.
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				for range 64 {
					_, _ = w.WriteString(strings.Repeat("x", 1023) + "\n")
				}
			})
			return
		case "/hello/notype":
			ctx.WriteString("no type\n") // no Content-Type set: none is sent
			return
		case "/hello/log":
			log.Printf("hello-worker: %s asked to log", ctx.Path())
		case "/hello/sleep":
			d, _ := time.ParseDuration(string(ctx.QueryArgs().Peek("d")))
			time.Sleep(d)
		}
		ctx.SetContentType("text/plain; charset=utf-8")
		fmt.Fprintf(ctx, "hello from pid %d, lane %s, path %s\n", os.Getpid(), worker.Lane(), ctx.Path())
	})
	if err != nil {
		log.Fatal(err)
	}
}
