package front

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/supervisor/lane"
)

func testOutcome() *record {
	return &record{Outcome: lane.Outcome{Method: []byte("GET"), Path: []byte("/a b\x1b[31m"), Status: 200, Bytes: 512, PID: 42,
		Queue: 3 * time.Microsecond, Filter: 0, Run: 1500 * time.Microsecond, Total: 1600 * time.Microsecond}}
}

// fullOutcome is a request as a browser sends it, every field set.
func fullOutcome() *record {
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
	l := "default"
	a := NewAccessLog("lanesd.access", false, &ours)
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
	l := "default"
	bare := testOutcome()
	bare.Truncated = true
	full := fullOutcome()
	full.Path = []byte("/a b\x1b[31m")
	full.UserAgent = []byte("curl \"q\" \\ \x00\xff é")
	for _, tc := range []struct {
		name string
		o    *record
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
			a := NewAccessLog("lanesd.access", true, &out)
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
	l := "default"
	bare := testOutcome()
	bare.Path = []byte("/")
	bare.Result = lane.ClientGone
	http10 := fullOutcome()
	http10.Proto, http10.Query, http10.Client, http10.Status, http10.Bytes = protoHTTP10, nil, netip.MustParseAddr("2001:db8::1"), 404, 0
	for _, tc := range []struct {
		name string
		o    *record
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
			a := NewAccessLog("lanesd.access", false, &out)
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
	l := "default"
	o := fullOutcome()
	o.Method = []byte("GET")
	o.Path = []byte("/a b\"c\\d\r\n\x1b[31mé")
	o.Query = []byte("q=\"x\"")
	o.Referer = []byte("\" injected \"")
	o.UserAgent = []byte("ua\nFAKE 127.0.0.1 - - [01/Jan/2000:00:00:00 +0000] \"GET / HTTP/1.1\" 200 0")
	o.Host = []byte("h st")
	var out bytes.Buffer
	a := NewAccessLog("lanesd.access", false, &out)
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
	l := "default"
	a := NewAccessLog("lanesd.access", false, w)
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
// AccessLog (go test -bench AccessLog ./supervisor/front/).
func BenchmarkAccessLog(b *testing.B) {
	l := "default"
	o := testOutcome()
	o.Path = []byte("/static/app.css")
	b.Run("hclog", func(b *testing.B) {
		h := hclog.New(&hclog.LoggerOptions{Name: "lanesd", Output: discard{}}).Named("access")
		b.ReportAllocs()
		for b.Loop() {
			h.Info("request", "lane", l, "method", string(o.Method), "path", string(o.Path), "status", o.Status,
				"bytes", o.Bytes, "pid", o.PID, "queue", o.Queue, "filter", o.Filter, "run", o.Run, "total", o.Total)
		}
	})
	b.Run("accessLog", func(b *testing.B) {
		a := NewAccessLog("lanesd.access", false, discard{})
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
			a := NewAccessLog("lanesd.access", f.json, discard{})
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
	l := "default"
	o := testOutcome()
	o.Path = []byte("/static/app.css")
	full := fullOutcome()
	full.UserAgent = append(full.UserAgent, "\x1b\xff"...) // the quoted, escaped form
	for _, f := range []struct {
		json   bool
		format config.AccessFormat
	}{{false, config.AccessLanes}, {true, config.AccessLanes}, {false, config.AccessCombined}} {
		a := NewAccessLog("lanesd.access", f.json, discard{})
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
