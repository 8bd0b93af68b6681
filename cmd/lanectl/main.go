// Command lanectl talks to a running lanesd through its admin API.
//
//	lanectl [-admin URL] [-token TOKEN | -token-file FILE] [-json] COMMAND [ARGS]
//	lanectl -version
//
// -admin defaults to $LANES_ADMIN, else http://127.0.0.1:8081; the token
// to $LANES_TOKEN. Exit status: 0 done, 1 refused by lanesd or lanesd not
// reachable, 2 usage error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const defaultAdmin = "http://127.0.0.1:8081"

const usage = `usage: lanectl [-admin URL] [-token TOKEN | -token-file FILE] [-json] COMMAND [ARGS]
       lanectl -version

commands:
  status                       lanes, their workers, queues and latencies; fetchd and themes
  mapped                       every mapping: lane, method, pattern, source, hits, last hit
  map LANE "METHOD PATTERN"    send requests matching the pattern to LANE, e.g. map slow "GET /report/*"
  unmap "METHOD PATTERN"       remove a mapping added by map or learned by auto_map
  resize LANE MIN [MAX]        set a lane's min_workers (and max_workers)
  drain LANE                   replace the lane's workers one by one, no request failing
  reload                       reload the config file, as SIGHUP does

-json prints the admin API's JSON answer as it is (also accepted after
the command name).

flags:
`

// usageError is a wrong command line: exit status 2 with the usage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lanectl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	defAdmin := os.Getenv("LANES_ADMIN")
	if defAdmin == "" {
		defAdmin = defaultAdmin
	}
	adminURL := fs.String("admin", defAdmin, "admin API base `URL` (env LANES_ADMIN)")
	token := fs.String("token", "", "bearer `token` (env LANES_TOKEN)")
	tokenFile := fs.String("token-file", "", "read the bearer token from `FILE`")
	asJSON := fs.Bool("json", false, "print the raw JSON answer")
	timeout := fs.Duration("timeout", 60*time.Second, "give up on lanesd after this long")
	showVersion := fs.Bool("version", false, "print lanectl's version and VCS revision, and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Get().Line("lanectl"))
		return 0
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}

	base, err := baseURL(*adminURL)
	if err != nil {
		fmt.Fprintln(stderr, "lanectl:", err)
		return 2
	}
	tok, err := resolveToken(*token, *tokenFile)
	if err != nil {
		fmt.Fprintln(stderr, "lanectl:", err)
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(stderr)
			fs.Usage()
			return 2
		}
		return 1
	}
	c := &client{api: &api.Client{Base: base, Token: tok, HTTP: &http.Client{Timeout: *timeout}}, json: *asJSON, out: stdout}

	cmd, rest := fs.Arg(0), fs.Args()[1:]
	// Flags after the command name: only -json.
	cfs := flag.NewFlagSet("lanectl "+cmd, flag.ContinueOnError)
	cfs.SetOutput(stderr)
	cfs.Usage = fs.Usage
	cfs.BoolVar(&c.json, "json", c.json, "print the raw JSON answer")
	if err := cfs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest = cfs.Args()

	switch cmd {
	case "status":
		err = c.status(rest)
	case "mapped":
		err = c.mapped(rest)
	case "map":
		err = c.addMapping(rest)
	case "unmap":
		err = c.removeMapping(rest)
	case "resize":
		err = c.resize(rest)
	case "drain":
		err = c.drain(rest)
	case "reload":
		err = c.reload(rest)
	default:
		err = usagef("unknown command %q", cmd)
	}
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "lanectl %s: %s\n\n", cmd, ue.msg)
		fs.Usage()
		return 2
	}
	fmt.Fprintln(stderr, "lanectl:", err)
	var se *api.ServerError
	if errors.As(err, &se) {
		for _, d := range se.Body.Diagnostics {
			fmt.Fprintln(stderr, "  "+d)
		}
	}
	return 1
}

// baseURL accepts "http://host:port", or "host:port" meaning http.
func baseURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("-admin %q: want a URL like %s", s, defaultAdmin)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// resolveToken: -token, else -token-file, else $LANES_TOKEN.
func resolveToken(token, file string) (string, error) {
	switch {
	case token != "" && file != "":
		return "", usagef("give -token or -token-file, not both")
	case token != "":
		return token, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("token file %s is empty", file)
		}
		return tok, nil
	}
	return strings.TrimSpace(os.Getenv("LANES_TOKEN")), nil
}

func (c *client) status(args []string) error {
	if len(args) != 0 {
		return usagef("status takes no arguments")
	}
	var st api.Status
	if err := c.call(http.MethodGet, "/api/status", nil, &st); err != nil || c.json {
		return err
	}
	return printStatus(c.out, st, time.Now())
}

func (c *client) mapped(args []string) error {
	if len(args) != 0 {
		return usagef("mapped takes no arguments")
	}
	var ms []api.Mapping
	if err := c.call(http.MethodGet, "/api/map", nil, &ms); err != nil || c.json {
		return err
	}
	return printMappings(c.out, ms, time.Now())
}

// methodPattern reads "METHOD PATTERN" from one argument or two.
func methodPattern(args []string) (method, pattern string, err error) {
	var f []string
	switch len(args) {
	case 1:
		f = strings.Fields(args[0])
	case 2:
		f = args
	}
	if len(f) != 2 || f[0] == "" || f[1] == "" {
		return "", "", usagef(`want "METHOD PATTERN", e.g. "GET /report/*" ("*" as method matches any)`)
	}
	// The method goes as typed: the API parses patterns as the config
	// does, and a config refuses "get /x", so lanectl does not accept it.
	return f[0], f[1], nil
}

func (c *client) addMapping(args []string) error {
	if len(args) < 2 || len(args) > 3 {
		return usagef(`usage: map LANE "METHOD PATTERN"`)
	}
	method, pattern, err := methodPattern(args[1:])
	if err != nil {
		return err
	}
	var m api.Mapping
	if err := c.call(http.MethodPost, "/api/map", api.MapRequest{Lane: args[0], Method: method, Pattern: pattern}, &m); err != nil || c.json {
		return err
	}
	_, err = fmt.Fprintf(c.out, "mapped %s %s to lane %s\n", m.Method, m.Pattern, m.Lane)
	return err
}

func (c *client) removeMapping(args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return usagef(`usage: unmap "METHOD PATTERN"`)
	}
	method, pattern, err := methodPattern(args)
	if err != nil {
		return err
	}
	var res api.UnmapResult
	if err := c.call(http.MethodDelete, "/api/map", api.UnmapRequest{Method: method, Pattern: pattern}, &res); err != nil || c.json {
		return err
	}
	_, err = fmt.Fprintf(c.out, "unmapped %s %s\n", method, pattern)
	return err
}

func (c *client) resize(args []string) error {
	if len(args) < 2 || len(args) > 3 {
		return usagef("usage: resize LANE MIN [MAX]")
	}
	var req api.ResizeRequest
	for i, arg := range args[1:] {
		n, err := strconv.Atoi(arg)
		if err != nil || n < 0 {
			return usagef("resize: %q is not a number of workers", arg)
		}
		if i == 0 {
			req.MinWorkers = &n
		} else {
			req.MaxWorkers = &n
		}
	}
	if req.MaxWorkers != nil && *req.MinWorkers > *req.MaxWorkers {
		return usagef("resize: MIN %d is above MAX %d", *req.MinWorkers, *req.MaxWorkers)
	}
	var res api.ResizeResult
	if err := c.call(http.MethodPost, "/api/lanes/"+url.PathEscape(args[0])+"/resize", req, &res); err != nil || c.json {
		return err
	}
	_, err := fmt.Fprintf(c.out, "lane %s: min_workers %d, max_workers %d\n", res.Lane, res.MinWorkers, res.MaxWorkers)
	return err
}

func (c *client) drain(args []string) error {
	if len(args) != 1 {
		return usagef("usage: drain LANE")
	}
	var res api.DrainResult
	if err := c.call(http.MethodPost, "/api/lanes/"+url.PathEscape(args[0])+"/drain", nil, &res); err != nil || c.json {
		return err
	}
	var err error
	if res.Started {
		_, err = fmt.Fprintf(c.out, "lane %s: draining, %d workers to replace one by one\n", res.Lane, res.Workers)
	} else {
		_, err = fmt.Fprintf(c.out, "lane %s: a drain is already under way\n", res.Lane)
	}
	return err
}

func (c *client) reload(args []string) error {
	if len(args) != 0 {
		return usagef("reload takes no arguments")
	}
	var res api.ReloadResult
	if err := c.call(http.MethodPost, "/api/reload", nil, &res); err != nil || c.json {
		return err
	}
	fmt.Fprintf(c.out, "reloaded %s\n", res.Config)
	if len(res.Changed) == 0 {
		_, err := fmt.Fprintln(c.out, "  no changes")
		return err
	}
	for _, ch := range res.Changed {
		fmt.Fprintln(c.out, "  "+ch)
	}
	return nil
}
