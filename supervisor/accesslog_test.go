package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/config"
)

// combinedLine is the combined format as goaccess's COMBINED reads it (as
// in package front's tests).
var combinedLine = regexp.MustCompile(`^(\S+) - - \[([^\]]+)\] ("(?:[^"\\]|\\.)*" \d{3} \d+ "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*".*)\n$`)

// Through the front: the fields come from the request as the client sent
// it (header names in any case), in a line written while the request's
// ctx is alive (a small response) and after it is gone (a spooled one).
func TestAccessLogThroughFront(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lanes.hcl")
	src := fmt.Sprintf(`
listen = "127.0.0.1:0"
admin { listen = "127.0.0.1:0" }
log {
  level            = "warn"
  access_format    = "combined"
  access_log_query = true
}
app { demo = true }
lane "default" {
  min_workers = 1
  command     = [%q]
}`, helloWorker)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.Load(path)
	if diags.HasErrors() {
		t.Fatalf("config: %s", diags.Error())
	}
	var out syncBuffer
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: &out})
	s, err := New(cfg, Options{Log: log, LogOutput: &out, Builtin: []string{helloWorker}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-s.Ready()

	c, err := net.Dial("tcp", s.FrontAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	// Three requests on one connection: the third reuses the buffers of
	// the second, whose spooled line may be written after it began.
	for _, r := range []string{
		"GET /hello/echo?x=1 HTTP/1.1\r\nHost: Example.COM\r\nuser-agent: small \"one\"\r\nREFERER: https://r.example/\r\n\r\n",
		"GET /hello/stream?n=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: spooled\r\nReferer: https://s.example/\r\n\r\n",
		"GET /hello/x HTTP/1.0\r\nHost: example.com\r\nUser-Agent: ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ\r\nConnection: keep-alive\r\n\r\n",
	} {
		if _, err := c.Write([]byte(r)); err != nil {
			t.Fatal(err)
		}
		resp := fasthttp.AcquireResponse()
		if err := resp.Read(br); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("%q: %v %d", r, err, resp.StatusCode())
		}
		fasthttp.ReleaseResponse(resp)
	}
	want := []string{
		`"GET /hello/echo?x=1 HTTP/1.1" 200 `,
		`"https://r.example/" "small \x22one\x22" lane=default queue=`,
		`"GET /hello/stream?n=2 HTTP/1.1" 200 65536 "https://s.example/" "spooled" lane=default queue=`,
		`"GET /hello/x HTTP/1.0" 200 `,
		` "-" "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ" lane=default`,
	}
	waitFor(t, "three access lines", 5*time.Second, func() bool {
		s.access.Flush()
		return strings.Count(out.String(), " lane=default ") == 3
	})
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("no access line with %s in\n%s", w, out.String())
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.Contains(line, " lane=default ") && (!combinedLine.MatchString(line+"\n") || !strings.HasPrefix(line, "127.0.0.1 - - [") || !strings.HasSuffix(line, " host=example.com")) {
			t.Errorf("access line %q", line)
		}
	}
}
