// Command lanectl talks to a running lanesd through its admin API.
//
//	lanectl [-admin URL] [-token TOKEN] status [-json]
//
// -admin defaults to $LANES_ADMIN, else http://127.0.0.1:8081; -token to
// $LANES_TOKEN.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: lanectl [-admin URL] [-token TOKEN] COMMAND

commands:
  status [-json]   lanes, their workers, queues and latencies
`

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lanectl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	defAdmin := os.Getenv("LANES_ADMIN")
	if defAdmin == "" {
		defAdmin = "http://127.0.0.1:8081"
	}
	admin := fs.String("admin", defAdmin, "admin API base `URL` (env LANES_ADMIN)")
	token := fs.String("token", os.Getenv("LANES_TOKEN"), "bearer `token` (env LANES_TOKEN)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	c := &client{base: strings.TrimRight(*admin, "/"), token: *token, http: &http.Client{Timeout: 10 * time.Second}}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var err error
	switch cmd {
	case "status":
		err = c.status(rest, stdout)
	case "mapped", "map", "unmap", "resize", "drain", "reload":
		err = fmt.Errorf("%s: not available in this version of lanes", cmd)
	default:
		fmt.Fprintf(stderr, "lanectl: unknown command %q\n\n", cmd)
		fs.Usage()
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "lanectl:", err)
		return 1
	}
	return 0
}

type client struct {
	base, token string
	http        *http.Client
}

// get fetches path and decodes the JSON answer into v; an admin error
// ({"error": ...}) becomes the returned error.
func (c *client) get(path string, v any) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return nil, errors.New(resp.Status)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
	}
	return body, nil
}

type statusDoc struct {
	PID    int     `json:"pid"`
	Uptime float64 `json:"uptime_s"`
	Listen string  `json:"listen"`
	Lanes  []struct {
		Name       string `json:"name"`
		MinWorkers int    `json:"min_workers"`
		MaxWorkers int    `json:"max_workers"`
		Workers    []struct {
			PID      int    `json:"pid"`
			State    string `json:"state"`
			Inflight int    `json:"inflight"`
			Served   uint64 `json:"served"`
		} `json:"workers"`
		Queued    int    `json:"queued"`
		Inflight  int    `json:"inflight"`
		Served    uint64 `json:"served"`
		Rejected  uint64 `json:"rejected"`
		Timeouts  uint64 `json:"timeouts"`
		Killed    uint64 `json:"killed"`
		Respawns  uint64 `json:"respawns"`
		CrashLoop bool   `json:"crash_loop"`
		LastExit  string `json:"last_exit"`
		Latency   struct {
			P50 float64 `json:"p50"`
			P99 float64 `json:"p99"`
		} `json:"latency_ms"`
	} `json:"lanes"`
}

func (c *client) status(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the raw JSON document")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var st statusDoc
	raw, err := c.get("/api/status", &st)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := w.Write(raw)
		return err
	}
	fmt.Fprintf(w, "lanesd pid %d, up %s, listening on %s\n\n", st.PID, (time.Duration(st.Uptime) * time.Second).String(), st.Listen)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "LANE\tREADY\tINFLIGHT\tQUEUED\tSERVED\tREJECTED\tTIMEOUTS\tKILLED\tRESPAWNS\tP50ms\tP99ms\tSTATE\t")
	for _, l := range st.Lanes {
		ready := 0
		for _, wk := range l.Workers {
			if wk.State == "ready" {
				ready++
			}
		}
		state := "ok"
		if l.CrashLoop {
			state = "crash loop: " + l.LastExit
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%s\t\n", l.Name, ready, l.MinWorkers,
			l.Inflight, l.Queued, l.Served, l.Rejected, l.Timeouts, l.Killed, l.Respawns, l.Latency.P50, l.Latency.P99, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LANE\tPID\tSTATE\tINFLIGHT\tSERVED")
	for _, l := range st.Lanes {
		for _, wk := range l.Workers {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\n", l.Name, wk.PID, wk.State, wk.Inflight, wk.Served)
		}
	}
	return tw.Flush()
}
