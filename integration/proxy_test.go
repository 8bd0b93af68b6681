package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// seen is what the test upstream's /echo saw of a request.
type seen struct {
	Method     string              `json:"method"`
	RequestURI string              `json:"request_uri"`
	Header     map[string][]string `json:"header"`
	BodyLen    int                 `json:"body_len"`
	BodySHA    string              `json:"body_sha256"`
}

// pattern returns a reader of n deterministic pseudo-random bytes; it holds
// only a small buffer however large n is.
func pattern(n int64) io.Reader {
	return io.LimitReader(&prng{r: rand.New(rand.NewPCG(1, 2))}, n)
}

type prng struct{ r *rand.Rand }

func (p *prng) Read(b []byte) (int, error) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := p.r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return len(b) &^ 7, nil
}

func patternSHA(n int64) string {
	h := sha256.New()
	io.Copy(h, pattern(n))
	return hex.EncodeToString(h.Sum(nil))
}

// proxyUpstream is the application behind lanes in the proxy tests.
func proxyUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/echo":
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			hdr := map[string][]string(r.Header.Clone())
			hdr["Host"] = []string{r.Host}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Seen-Method", r.Method)
			json.NewEncoder(w).Encode(seen{
				Method: r.Method, RequestURI: r.RequestURI, Header: hdr,
				BodyLen: int(n), BodySHA: hex.EncodeToString(h.Sum(nil)),
			})
		case strings.HasPrefix(r.URL.Path, "/status/"):
			code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
			if code == 301 {
				w.Header().Set("Location", "/moved/here?x=1")
			}
			w.Header().Set("X-Status", strconv.Itoa(code))
			w.WriteHeader(code)
			if code != 204 {
				fmt.Fprintf(w, "status %d\n", code)
			}
		case r.URL.Path == "/cookies":
			w.Header().Add("Set-Cookie", "a=1; Path=/")
			w.Header().Add("Set-Cookie", "b=2; Path=/; HttpOnly")
			w.Header().Set("X-Custom", "custom value")
			w.Header().Set("Cache-Control", "no-cache")
			w.Write([]byte("cookies\n"))
		case r.URL.Path == "/bytes":
			n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			w.Header().Set("X-Seen-Method", r.Method)
			if r.Method != http.MethodHead {
				io.Copy(w, pattern(n))
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(up.Close)
	return up
}

func proxyConfig(upstream string) string {
	return fmt.Sprintf(`
app {
  upstream = %q
}
lane "default" {
  min_workers = 2
}
`, upstream)
}

// TestProxy checks the front → worker → upstream chain: what the client
// sends reaches the application, and what it answers reaches the client.
func TestProxy(t *testing.T) {
	t.Parallel()
	up := proxyUpstream(t)
	l := startLanesd(t, proxyConfig(up.URL))

	t.Run("status codes", func(t *testing.T) {
		for _, code := range []int{200, 201, 204, 301, 404, 500} {
			r := l.get("/status/" + strconv.Itoa(code))
			if r.err != nil || r.status != code {
				t.Errorf("GET /status/%d: %s", code, r)
				continue
			}
			if got := r.header.Get("X-Status"); got != strconv.Itoa(code) {
				t.Errorf("GET /status/%d: X-Status %q", code, got)
			}
			switch code {
			case 204:
				if len(r.body) != 0 {
					t.Errorf("204 with a body: %q", r.body)
				}
			case 301:
				if loc := r.header.Get("Location"); loc != "/moved/here?x=1" {
					t.Errorf("301 Location = %q", loc)
				}
				fallthrough
			default:
				if want := fmt.Sprintf("status %d\n", code); string(r.body) != want {
					t.Errorf("GET /status/%d body %q, want %q", code, r.body, want)
				}
			}
		}
	})

	t.Run("response headers", func(t *testing.T) {
		r := l.mustGet(t, "/cookies", 200)
		if got := r.header.Values("Set-Cookie"); len(got) != 2 || got[0] != "a=1; Path=/" || got[1] != "b=2; Path=/; HttpOnly" {
			t.Errorf("Set-Cookie = %q; want both cookies as sent", got)
		}
		if got := r.header.Get("X-Custom"); got != "custom value" {
			t.Errorf("X-Custom = %q", got)
		}
		if got := r.header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("Cache-Control = %q", got)
		}
	})

	t.Run("request headers and query", func(t *testing.T) {
		const uri = "/echo?a=1&b=%20x&b=2&empty=&q=%E2%9C%93&x=a+b&~=~"
		hdr := http.Header{
			"X-Request-Thing": {"one"},
			"X-Multi":         {"m1", "m2"},
			"Cookie":          {"sid=abc; theme=dark"},
			"Authorization":   {"Bearer app-token"},
			"X-Forwarded-For": {"203.0.113.7"},
		}
		r := do(l.client, http.MethodGet, l.URL(uri), nil, hdr)
		if r.err != nil || r.status != 200 {
			t.Fatalf("GET %s: %s", uri, r)
		}
		var s seen
		if err := json.Unmarshal(r.body, &s); err != nil {
			t.Fatalf("echo: %v: %q", err, r.body)
		}
		if s.RequestURI != uri {
			t.Errorf("upstream saw request URI %q, want %q", s.RequestURI, uri)
		}
		h := http.Header(s.Header)
		for k, want := range map[string]string{
			"X-Request-Thing": "one",
			"Cookie":          "sid=abc; theme=dark",
			"Authorization":   "Bearer app-token",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("upstream saw %s %q, want %q", k, got, want)
			}
		}
		if got := strings.Join(h.Values("X-Multi"), ","); strings.ReplaceAll(got, " ", "") != "m1,m2" {
			t.Errorf("upstream saw X-Multi %q, want m1 and m2", h.Values("X-Multi"))
		}
		xff := strings.Join(h.Values("X-Forwarded-For"), ", ")
		if !strings.HasPrefix(xff, "203.0.113.7") || !strings.HasSuffix(xff, "127.0.0.1") {
			t.Errorf("upstream saw X-Forwarded-For %q; want the client's value followed by 127.0.0.1", xff)
		}
	})

	t.Run("hop-by-hop headers", func(t *testing.T) {
		raw := "GET /echo HTTP/1.1\r\n" +
			"Host: app.example\r\n" +
			"Connection: close, X-Hop\r\n" +
			"X-Hop: secret\r\n" +
			"Keep-Alive: timeout=5\r\n" +
			"TE: trailers\r\n" +
			"Upgrade: h2c\r\n" +
			"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n" +
			"X-End: kept\r\n" +
			"\r\n"
		resp, body, err := readResponse(l.Front, raw, 10*time.Second)
		if err != nil {
			t.Fatalf("raw request: %v", err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("raw request: %s %q", resp.Status, body)
		}
		var s seen
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("echo: %v: %q", err, body)
		}
		h := http.Header(s.Header)
		for _, k := range []string{"X-Hop", "Keep-Alive", "Te", "Upgrade", "Proxy-Authorization"} {
			if v, ok := h[k]; ok {
				t.Errorf("hop-by-hop header %s: %q reached the upstream", k, v)
			}
		}
		if c := h.Get("Connection"); strings.Contains(strings.ToLower(c), "x-hop") {
			t.Errorf("client's Connection header %q reached the upstream", c)
		}
		if got := h.Get("X-End"); got != "kept" {
			t.Errorf("end-to-end header X-End = %q at the upstream, want kept", got)
		}
		if got := h.Get("Host"); got != "app.example" {
			t.Errorf("upstream saw Host %q, want app.example", got)
		}
		if xff := h.Get("X-Forwarded-For"); !strings.HasSuffix(xff, "127.0.0.1") {
			t.Errorf("upstream saw X-Forwarded-For %q; want it to end with 127.0.0.1", xff)
		}
	})

	t.Run("POST 1MB body", func(t *testing.T) {
		body := make([]byte, 1<<20)
		io.ReadFull(pattern(int64(len(body))), body)
		sum := sha256.Sum256(body)
		r := do(l.client, http.MethodPost, l.URL("/echo?upload=1"), body, http.Header{"Content-Type": {"application/octet-stream"}})
		if r.err != nil || r.status != 200 {
			t.Fatalf("POST: %s", r)
		}
		var s seen
		if err := json.Unmarshal(r.body, &s); err != nil {
			t.Fatalf("echo: %v: %q", err, r.body)
		}
		if s.Method != "POST" || s.BodyLen != len(body) || s.BodySHA != hex.EncodeToString(sum[:]) {
			t.Errorf("upstream saw %s with %d bytes (sha256 %s); want POST with %d bytes (sha256 %x)",
				s.Method, s.BodyLen, s.BodySHA, len(body), sum)
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodHead, l.URL("/bytes?n=12345"), nil)
		resp, err := l.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) != 0 {
			t.Fatalf("HEAD: %s with %d body bytes", resp.Status, len(b))
		}
		if got := resp.Header.Get("X-Seen-Method"); got != "HEAD" {
			t.Errorf("upstream saw method %q, want HEAD", got)
		}
		if resp.ContentLength != 12345 {
			t.Errorf("HEAD Content-Length %d, want the upstream's 12345", resp.ContentLength)
		}
		// The connection is still usable after a HEAD.
		l.mustGet(t, "/cookies", 200)
	})
}

// TestProxyStreams100MB: a large response streams through the front and
// the worker without either holding it in memory.
func TestProxyStreams100MB(t *testing.T) {
	t.Parallel()
	const n = 100 << 20
	up := proxyUpstream(t)
	l := startLanesd(t, proxyConfig(up.URL)+"log {\n  access_log = false\n}\n")
	want := patternSHA(n)

	procs := append([]int{l.PID}, allPIDs(t, l)...)
	base := map[int]int64{}
	hwm := map[int]int64{}
	for _, p := range procs {
		base[p] = procKB(p, "VmRSS")
		hwm[p] = procKB(p, "VmHWM")
	}
	var mu sync.Mutex
	peak := map[int]int64{}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			for _, p := range procs {
				v := procKB(p, "VmRSS")
				mu.Lock()
				peak[p] = max(peak[p], v)
				mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	start := time.Now()
	resp, err := l.client.Get(l.URL("/bytes?n=" + strconv.Itoa(n)))
	if err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatal(err)
	}
	h := sha256.New()
	got, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	stop.Store(true)
	wg.Wait()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET 100MB: %s after %d bytes: %v", resp.Status, got, err)
	}
	if got != n || hex.EncodeToString(h.Sum(nil)) != want {
		t.Errorf("got %d bytes (sha256 %x), want %d (sha256 %s)", got, h.Sum(nil), n, want)
	}
	if resp.ContentLength != n {
		t.Errorf("Content-Length %d, want %d", resp.ContentLength, n)
	}
	t.Logf("100MB in %v (%.0f MB/s)", took.Round(time.Millisecond), float64(n)/(1<<20)/took.Seconds())

	const limitKB = 60 << 10
	for _, p := range procs {
		who := "worker"
		if p == l.PID {
			who = "lanesd"
		}
		growth := max(peak[p]-base[p], procKB(p, "VmHWM")-hwm[p])
		t.Logf("%s %d: VmRSS %d kB before, peak %d kB, growth %d kB", who, p, base[p], peak[p], growth)
		if growth > limitKB {
			t.Errorf("%s %d grew by %d MB streaming 100MB; it buffers the response", who, p, growth>>10)
		}
	}
}
