// Command hello-worker is a custom lanes worker: any Go program becomes one
// by handing its fasthttp handler to worker.Serve. Run it from a lane:
//
//	lane "hello" {
//	  command = ["./bin/hello-worker"]
//	  map     = ["GET /hello*"]
//	}
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/worker"
)

func main() {
	worker.Serve(func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/hello/panic":
			panic("hello-worker: asked to panic")
		case "/hello/sleep":
			d, _ := time.ParseDuration(string(ctx.QueryArgs().Peek("d")))
			time.Sleep(d)
		}
		ctx.SetContentType("text/plain; charset=utf-8")
		fmt.Fprintf(ctx, "hello from pid %d, lane %s, path %s\n", os.Getpid(), os.Getenv("LANES_LANE"), ctx.Path())
	})
}
