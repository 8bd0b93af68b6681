package supervisor

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// FuzzFront sends raw bytes to a real front (hello-worker behind it),
// followed on the same connection by a well-formed request. Whatever the
// bytes: the front does not panic; the front-to-worker hop never breaks
// (a 502 would mean the front forwarded something its worker could not
// read); and if the well-formed request is answered, it is answered last,
// with exactly its own target and Host — nothing of the fuzzed bytes was
// smuggled into it, and no answer was shifted onto it.
func FuzzFront(f *testing.F) {
	for _, seed := range []string{
		"GET /hello/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /hello/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST /hello/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST /hello/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /hello/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc",
		"POST /hello/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n1\r\na\r\n0\r\nX-T: 1\r\n\r\n",
		"GET http://u:p@h/hello/echo HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET https://h/hello/echo HTTP/1.1\r\nHost: a\r\nConnection: X-Forwarded-For, Host\r\nX-Forwarded-For: 1\r\n\r\n",
		"GET /hello/echo HTTP/1.0\r\n\r\n",
		"GET /hello/echo HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
		"GET /hello/echo HTTP/1.1\r\nHost: a\r\nX Bad: 1\r\n\r\n",
		"GET /hello/echo HTTP/1.1\r\nHost: a\r\n Folded: 1\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /hello/echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
	} {
		f.Add([]byte(seed))
	}
	var panics atomic.Int64
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: panicCounter{&panics}})
	s := startLogging(f, `
front {
  read_timeout = "1s"
  max_body_size = "64KB"
}
lane "default" {
  min_workers = 2
  concurrency = 4
  request_timeout = "5s"
  command = [CMD]
}`, log)
	var seq atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte) {
		n := seq.Add(1)
		c, err := net.Dial("tcp", s.FrontAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		marker := fmt.Sprintf("/hello/echo?marker=%d", n)
		go func() {
			c.Write(data)
			fmt.Fprintf(c, "\r\n\r\nGET %s HTTP/1.1\r\nHost: m\r\n\r\n", marker)
		}()
		br := bufio.NewReader(c)
		var answers []string
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				break
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusBadGateway {
				t.Fatalf("502 from the front: the worker could not read what the front forwarded: %q", b)
			}
			if resp.StatusCode == http.StatusContinue {
				continue
			}
			answers = append(answers, string(b))
			if strings.Contains(string(b), "marker=") {
				break
			}
		}
		for i, a := range answers {
			if !strings.Contains(a, "marker=") {
				continue
			}
			if i != len(answers)-1 {
				t.Fatalf("the well-formed request's answer is not the last: %q", answers)
			}
			if !strings.Contains(a, "target: "+marker+"\n") || !strings.Contains(a, "\nHost: m\r\n") {
				t.Fatalf("the well-formed request reached the worker altered: %q", a)
			}
		}
		if panics.Load() > 0 {
			t.Fatalf("the front panicked")
		}
	})
}

// panicCounter counts log lines that report a panic.
type panicCounter struct{ n *atomic.Int64 }

func (p panicCounter) Write(b []byte) (int, error) {
	if strings.Contains(string(b), "panic") {
		p.n.Add(1)
	}
	return len(b), nil
}
