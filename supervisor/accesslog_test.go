package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/supervisor/lane"
)

func testOutcome() *lane.Outcome {
	return &lane.Outcome{Method: []byte("GET"), Path: []byte("/a b\x1b[31m"), Status: 200, Bytes: 512, PID: 42,
		Queue: 3 * time.Microsecond, Filter: 0, Run: 1500 * time.Microsecond, Total: 1600 * time.Microsecond}
}

// fullOutcome is a request as a browser sends it, every field set.
func fullOutcome() *lane.Outcome {
	o := testOutcome()
	o.Path = []byte("/static/app.css")
	o.Client = netip.MustParseAddr("203.0.113.7")
	o.Proto = protoHTTP11
	o.Host = []byte("example.com")
	o.Query = []byte("v=3&lang=en")
	o.Referer = []byte("https://example.com/")
	o.UserAgent = []byte("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
	o.Queue, o.Filter, o.Run, o.Total = 21*time.Microsecond+400, 0, 1538*time.Microsecond, 1564*time.Microsecond
	return o
}

// The access log reads like hclog's own lines: same layout, same quoting.
func TestAccessLogTextMatchesHclog(t *testing.T) {
	var ours, theirs bytes.Buffer
	l := lane.New(config.Lane{Name: "default"}, lane.Env{Log: hclog.NewNullLogger()})
	a := newAccessLog("lanesd.access", false, &ours)
	o := testOutcome()
	a.log(l, o, config.AccessLanes)
	o = fullOutcome()
	o.Path = []byte("/a b\x1b[31m")
	o.UserAgent = []byte("curl/8 \"x\"\r\n\xff")
	a.log(l, o, config.AccessLanes)
	a.log(l, fullOutcome(), config.AccessLanes)
	a.Flush()
	h := hclog.New(&hclog.LoggerOptions{Name: "lanesd", Output: &theirs}).Named("access")
	o = testOutcome()
	h.Info("request", "lane", "default", "method", "GET", "path", `/a b\x1b[31m`, "status", 200, "bytes", 512, "pid", 42,
		"queue", o.Queue, "filter", o.Filter, "run", o.Run, "total", o.Total)
	o = fullOutcome()
	h.Info("request", "lane", "default", "client", "203.0.113.7", "method", "GET", "host", "example.com", "path", `/a b\x1b[31m`,
		"query", "v=3&lang=en", "status", 200, "bytes", 512, "pid", 42,
		"queue", o.Queue, "filter", o.Filter, "run", o.Run, "total", o.Total,
		"referer", "https://example.com/", "user_agent", `curl/8 \"x\"\r\n\xff`)
	h.Info("request", "lane", "default", "client", "203.0.113.7", "method", "GET", "host", "example.com", "path", "/static/app.css",
		"query", "v=3&lang=en", "status", 200, "bytes", 512, "pid", 42,
		"queue", o.Queue, "filter", o.Filter, "run", o.Run, "total", o.Total,
		"referer", "https://example.com/", "user_agent", string(o.UserAgent))
	// The timestamps differ; the rest must not.
	cut := regexp.MustCompile(`(?m)^\S+ `)
	if got, want := cut.ReplaceAllString(ours.String(), ""), cut.ReplaceAllString(theirs.String(), ""); got != want {
		t.Errorf("access lines differ from hclog's\n ours:   %q\n hclog:  %q", got, want)
	}
	if strings.Contains(ours.String(), "\x1b") {
		t.Error("a control character from the path reached the log")
	}
}

// The JSON line parses, with durations in seconds, as log tools expect.
func TestAccessLogJSON(t *testing.T) {
	l := lane.New(config.Lane{Name: "default"}, lane.Env{Log: hclog.NewNullLogger()})
	bare := testOutcome()
	bare.Truncated = true
	full := fullOutcome()
	full.Path = []byte("/a b\x1b[31m")
	full.UserAgent = []byte("curl \"q\" \\ \x00\xff é")
	for _, tc := range []struct {
		name string
		o    *lane.Outcome
		want map[string]any
	}{
		{"bare", bare, map[string]any{"@message": "request", "@module": "lanesd.access", "@level": "info", "lane": "default",
			"method": "GET", "path": "/a b\x1b[31m", "status": 200.0, "bytes": 512.0, "pid": 42.0,
			"queue": 0.000003, "filter": 0.0, "run": 0.0015, "total": 0.0016, "failed": "truncated"}},
		{"full", full, map[string]any{"@message": "request", "@module": "lanesd.access", "@level": "info", "lane": "default",
			"client": "203.0.113.7", "method": "GET", "host": "example.com", "path": "/a b\x1b[31m", "query": "v=3&lang=en",
			"status": 200.0, "bytes": 512.0, "pid": 42.0, "queue": 0.000021, "filter": 0.0, "run": 0.001538, "total": 0.001564,
			"referer": "https://example.com/", "user_agent": "curl \"q\" \\ \x00\ufffd é"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			a := newAccessLog("lanesd.access", true, &out)
			a.log(l, tc.o, config.AccessLanes)
			a.Flush()
			var m map[string]any
			if err := json.Unmarshal(out.Bytes(), &m); err != nil {
				t.Fatalf("%v: %q", err, out.String())
			}
			if _, err := time.Parse(time.RFC3339Nano, m["@timestamp"].(string)); err != nil {
				t.Errorf("@timestamp: %v", err)
			}
			delete(m, "@timestamp")
			if !reflect.DeepEqual(m, tc.want) {
				t.Errorf("JSON line %s\n got:  %v\n want: %v", out.String(), m, tc.want)
			}
		})
	}
}

// The combined format is Apache's and nginx's, which goaccess and log
// shippers parse, with lanes' fields after it.
func TestAccessLogCombined(t *testing.T) {
	l := lane.New(config.Lane{Name: "default"}, lane.Env{Log: hclog.NewNullLogger()})
	bare := testOutcome()
	bare.Path = []byte("/")
	bare.Result = lane.ClientGone
	http10 := fullOutcome()
	http10.Proto, http10.Query, http10.Client, http10.Status, http10.Bytes = protoHTTP10, nil, netip.MustParseAddr("2001:db8::1"), 404, 0
	for _, tc := range []struct {
		name string
		o    *lane.Outcome
		want string // after the time
	}{
		{"full", fullOutcome(), `"GET /static/app.css?v=3&lang=en HTTP/1.1" 200 512 "https://example.com/" ` +
			`"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0" ` +
			`lane=default queue=0.000021 filter=0 run=0.001538 total=0.001564 host=example.com`},
		{"http10", http10, `"GET /static/app.css HTTP/1.0" 404 0 "https://example.com/" ` +
			`"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0" ` +
			`lane=default queue=0.000021 filter=0 run=0.001538 total=0.001564 host=example.com`},
		{"bare", bare, `"GET / HTTP/1.1" 200 512 "-" "-" lane=default queue=0.000003 filter=0 run=0.0015 total=0.0016 failed=client`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			a := newAccessLog("lanesd.access", false, &out)
			a.log(l, tc.o, config.AccessCombined)
			a.Flush()
			line := out.String()
			m := combinedLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("not a combined line: %q", line)
			}
			client := "-"
			if tc.o.Client.IsValid() {
				client = tc.o.Client.String()
			}
			if m[1] != client {
				t.Errorf("client %q, want %q", m[1], client)
			}
			if ts, err := time.Parse("02/Jan/2006:15:04:05 -0700", m[2]); err != nil || time.Since(ts) > time.Minute {
				t.Errorf("time %q: %v", m[2], err)
			}
			if m[3] != tc.want {
				t.Errorf("line %q\n got:  %s\n want: %s", line, m[3], tc.want)
			}
		})
	}
}

// combinedLine is the combined format as goaccess's COMBINED reads it.
var combinedLine = regexp.MustCompile(`^(\S+) - - \[([^\]]+)\] ("(?:[^"\\]|\\.)*" \d{3} \d+ "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*".*)\n$`)

// A client can neither end a quoted field nor start a line of its own: in
// the combined format '"', '\\' and bytes outside printable ASCII are
// \xHH, as nginx writes them, and a decoded path's space is %20 so the
// request field keeps its three words.
func TestAccessLogEscaping(t *testing.T) {
	l := lane.New(config.Lane{Name: "default"}, lane.Env{Log: hclog.NewNullLogger()})
	o := fullOutcome()
	o.Method = []byte("GET")
	o.Path = []byte("/a b\"c\\d\r\n\x1b[31mé")
	o.Query = []byte("q=\"x\"")
	o.Referer = []byte("\" injected \"")
	o.UserAgent = []byte("ua\nFAKE 127.0.0.1 - - [01/Jan/2000:00:00:00 +0000] \"GET / HTTP/1.1\" 200 0")
	o.Host = []byte("h st")
	var out bytes.Buffer
	a := newAccessLog("lanesd.access", false, &out)
	a.log(l, o, config.AccessCombined)
	a.Flush()
	line := out.String()
	if strings.Count(line, "\n") != 1 || strings.ContainsAny(line, "\r\x1b") {
		t.Fatalf("a control byte reached the line: %q", line)
	}
	for _, want := range []string{
		`"GET /a%20b\x22c\x5Cd\x0D\x0A\x1B[31m\xC3\xA9?q=\x22x\x22 HTTP/1.1"`,
		`"\x22 injected \x22"`,
		`"ua\x0AFAKE 127.0.0.1 - - [01/Jan/2000:00:00:00 +0000] \x22GET / HTTP/1.1\x22 200 0"`,
		` host=h%20st`,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q\n lacks %s", line, want)
		}
	}
	if !combinedLine.MatchString(line) {
		t.Errorf("not a combined line: %q", line)
	}
}

// Lines are written whole and in order, however many goroutines log.
func TestAccessLogConcurrentWholeLines(t *testing.T) {
	var mu sync.Mutex
	var out bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if len(p) > accessChunk || p[len(p)-1] != '\n' {
			t.Errorf("write of %d bytes not ending a line", len(p))
		}
		return out.Write(p)
	})
	l := lane.New(config.Lane{Name: "default"}, lane.Env{Log: hclog.NewNullLogger()})
	a := newAccessLog("lanesd.access", false, w)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				a.log(l, testOutcome(), config.AccessLanes)
			}
		})
	}
	wg.Wait()
	a.Flush()
	if n := strings.Count(out.String(), "\n"); n != 4000 {
		t.Errorf("%d lines, want 4000", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// BenchmarkAccessLog compares a line through hclog with one through
// accessLog (go test -bench AccessLog ./supervisor/).
func BenchmarkAccessLog(b *testing.B) {
	l := lane.New(config.Lane{Name: "default"}, lane.Env{Log: hclog.NewNullLogger()})
	o := testOutcome()
	o.Path = []byte("/static/app.css")
	b.Run("hclog", func(b *testing.B) {
		h := hclog.New(&hclog.LoggerOptions{Name: "lanesd", Output: discard{}}).Named("access")
		b.ReportAllocs()
		for b.Loop() {
			h.Info("request", "lane", l.Name(), "method", string(o.Method), "path", string(o.Path), "status", o.Status,
				"bytes", o.Bytes, "pid", o.PID, "queue", o.Queue, "filter", o.Filter, "run", o.Run, "total", o.Total)
		}
	})
	b.Run("accessLog", func(b *testing.B) {
		a := newAccessLog("lanesd.access", false, discard{})
		b.ReportAllocs()
		for b.Loop() {
			a.log(l, o, config.AccessLanes)
		}
	})
	// A browser's request: client, Host, query, Referer, User-Agent.
	full := fullOutcome()
	for _, f := range []struct {
		name   string
		json   bool
		format config.AccessFormat
	}{{"full/text", false, config.AccessLanes}, {"full/json", true, config.AccessLanes}, {"full/combined", false, config.AccessCombined}} {
		b.Run(f.name, func(b *testing.B) {
			a := newAccessLog("lanesd.access", f.json, discard{})
			b.ReportAllocs()
			for b.Loop() {
				a.log(l, full, f.format)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// A line costs no allocation, and neither do the flushes that recycle the
// buffers (counted per 100 lines: a flush comes every ~20).
func TestAccessLogAllocs(t *testing.T) {
	l := lane.New(config.Lane{Name: "default"}, lane.Env{Log: hclog.NewNullLogger()})
	o := testOutcome()
	o.Path = []byte("/static/app.css")
	full := fullOutcome()
	full.UserAgent = append(full.UserAgent, "\x1b\xff"...) // the quoted, escaped form
	for _, f := range []struct {
		json   bool
		format config.AccessFormat
	}{{false, config.AccessLanes}, {true, config.AccessLanes}, {false, config.AccessCombined}} {
		a := newAccessLog("lanesd.access", f.json, discard{})
		n := testing.AllocsPerRun(200, func() {
			for range 50 {
				a.log(l, o, f.format)
				a.log(l, full, f.format)
			}
		})
		if n != 0 {
			t.Errorf("json=%v %s: %v allocations per 100 lines, want 0", f.json, f.format, n)
		}
	}
}

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
