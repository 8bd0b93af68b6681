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
	"log"
	"os"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/worker"
)

func main() {
	err := worker.Serve(func(ctx *fasthttp.RequestCtx) {
		fmt.Fprintf(ctx, "hello from pid %d, lane %s, path %s\n", os.Getpid(), worker.Lane(), ctx.Path())
	})
	if err != nil {
		log.Fatal(err) // run by hand, or lanesd went away
	}
}
