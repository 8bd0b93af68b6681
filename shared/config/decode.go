package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/lanes-dev/lanes/shared"
)

// Load reads, decodes and validates the config file at path. It reports every
// problem it finds, not only the first, each with the range of the offending
// value; on any error it returns a nil Config. Warnings, if any, come back
// alongside a usable Config. Load never panics on bad input.
func Load(path string) (*Config, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, hcl.Diagnostics{readError(path, err)}
	}
	file, diags := hclparse.NewParser().ParseHCL(src, path)
	if diags.HasErrors() {
		// A body with syntax errors decodes into noise; stop here.
		sortDiagnostics(diags)
		return nil, diags
	}
	d := &decoder{
		dir:    filepath.Dir(path),
		lanes:  newNames(),
		themes: newNames(),
		mapped: map[string]mapping{},
	}
	cfg := d.config(file.Body, path)
	diags = append(diags, d.diags...)
	sortDiagnostics(diags)
	if diags.HasErrors() {
		return nil, diags
	}
	return cfg, diags
}

func readError(path string, err error) *hcl.Diagnostic {
	detail := err.Error() + "."
	if errors.Is(err, fs.ErrNotExist) {
		detail = "The file does not exist."
	}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Cannot read config file",
		Detail:   detail,
		// A range with no line: the problem is the whole file.
		Subject: &hcl.Range{Filename: path},
	}
}

// nameRE is what lane and theme names look like: they appear in URLs of the
// admin API, metrics labels and log lines.
var nameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)

// decoder collects diagnostics while one config is decoded.
type decoder struct {
	dir    string // the config file's directory, for relative paths
	diags  hcl.Diagnostics
	lanes  *names
	themes *names
	// mapped is every static pattern ("METHOD PATH") seen so far.
	mapped map[string]mapping
	// refs are names used before all declarations are known; checked last.
	refs []ref
}

type mapping struct {
	lane string
	at   hcl.Range
}

// ref is a use of a lane or theme name, at the range of the value naming it.
type ref struct {
	kind string // "lane" or "theme"
	name string
	at   hcl.Range
}

// names is a set of declared names in declaration order.
type names struct {
	order []string
	at    map[string]hcl.Range
}

func newNames() *names { return &names{at: map[string]hcl.Range{}} }

// declare records name at r. If name was declared before it returns where,
// and true.
func (n *names) declare(name string, r hcl.Range) (hcl.Range, bool) {
	if first, dup := n.at[name]; dup {
		return first, true
	}
	n.at[name] = r
	n.order = append(n.order, name)
	return hcl.Range{}, false
}

func attrSchemas(names ...string) []hcl.AttributeSchema {
	s := make([]hcl.AttributeSchema, len(names))
	for i, n := range names {
		s[i] = hcl.AttributeSchema{Name: n}
	}
	return s
}

var (
	rootSchema = &hcl.BodySchema{
		Attributes: attrSchemas("listen", "debug_headers", "shutdown_timeout", "state_dir"),
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "front"},
			{Type: "admin"},
			{Type: "log"},
			{Type: "app"},
			{Type: "theme", LabelNames: []string{"name"}},
			{Type: "fetchd"},
			{Type: "lane", LabelNames: []string{"name"}},
			{Type: "auto_map"},
		},
	}
	frontSchema = &hcl.BodySchema{
		Attributes: attrSchemas("read_timeout", "write_timeout", "idle_timeout", "max_header_size", "max_body_size", "max_conns",
			"client_body_buffer", "response_buffer", "max_temp_file", "retry_methods"),
	}
	adminSchema = &hcl.BodySchema{Attributes: attrSchemas("listen", "token_file", "max_conns")}
	logSchema   = &hcl.BodySchema{Attributes: attrSchemas("level", "format", "access_log", "access_format", "access_log_query")}
	appSchema   = &hcl.BodySchema{Attributes: attrSchemas("upstream", "upstream_timeout", "theme", "demo", "underscores_in_headers", "direct")}
	themeSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "url", Required: true}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "rule", LabelNames: []string{"kind"}}},
	}
	ruleSchema   = &hcl.BodySchema{Attributes: attrSchemas("theme", "content")}
	fetchdSchema = &hcl.BodySchema{
		Attributes: attrSchemas("cache_dir", "workers", "fetch_timeout", "min_refresh", "stale_wait", "max_stale"),
	}
	laneSchema = &hcl.BodySchema{
		Attributes: attrSchemas("min_workers", "max_workers", "concurrency", "max_queue", "queue_timeout",
			"request_timeout", "idle_timeout", "max_requests", "max_requests_jitter", "max_rss", "map", "command",
			"exec", "exec_socket", "exec_dir", "exec_env", "health_path", "ready", "stop_signal", "stop_timeout"),
	}
	autoMapSchema = &hcl.BodySchema{
		Attributes: append([]hcl.AttributeSchema{
			{Name: "threshold", Required: true},
			{Name: "lane", Required: true},
		}, attrSchemas("from", "forget_after", "max_entries")...),
	}
)

func (d *decoder) content(body hcl.Body, schema *hcl.BodySchema) *hcl.BodyContent {
	c, diags := body.Content(schema)
	d.diags = append(d.diags, diags...)
	return c
}

func (d *decoder) config(body hcl.Body, path string) *Config {
	cfg := &Config{
		File:            path,
		Listen:          DefaultListen,
		ShutdownTimeout: DefaultShutdownTimeout,
		Front: Front{
			ReadTimeout:   DefaultReadTimeout,
			WriteTimeout:  DefaultWriteTimeout,
			IdleTimeout:   DefaultIdleTimeout,
			MaxHeaderSize: DefaultMaxHeaderSize,
			MaxBodySize:   DefaultMaxBodySize,
			MaxConns:      DefaultMaxConns,

			ClientBodyBuffer: DefaultClientBodyBuffer,
			ResponseBuffer:   DefaultResponseBuffer,
			MaxTempFile:      DefaultMaxTempFile,
			RetryMethods:     DefaultRetryMethods,
		},
		Admin: Admin{Listen: DefaultAdminListen, MaxConns: DefaultAdminMaxConns},
		Log:   Log{Level: hclog.Info, AccessLog: true},
		App:   App{UpstreamTimeout: DefaultUpstreamTimeout},
	}
	c := d.content(body, rootSchema)
	listenAttr, listenOK := d.listenAddr(c.Attributes, "listen", &cfg.Listen)
	d.boolean(c.Attributes, "debug_headers", &cfg.DebugHeaders)
	d.duration(c.Attributes, "shutdown_timeout", &cfg.ShutdownTimeout, false)

	blocks := c.Blocks.ByType()
	for _, b := range blocks["theme"] {
		cfg.Themes = append(cfg.Themes, d.theme(b))
	}
	for _, b := range blocks["lane"] {
		cfg.Lanes = append(cfg.Lanes, d.lane(b))
	}
	if b := d.single(blocks["front"]); b != nil {
		d.front(b, &cfg.Front)
	}
	var adminListenAttr *hcl.Attribute
	adminListenOK := true
	if b := d.single(blocks["admin"]); b != nil {
		adminListenAttr, adminListenOK = d.admin(b, &cfg.Admin)
	}
	if b := d.single(blocks["log"]); b != nil {
		d.log(b, &cfg.Log)
	}
	appBlock := d.single(blocks["app"])
	if appBlock != nil {
		d.app(appBlock, &cfg.App)
	}
	if b := d.single(blocks["fetchd"]); b != nil {
		cfg.Fetchd = d.fetchd(b)
	} else if cfg.App.Theme != "" {
		cfg.Fetchd = defaultFetchd()
	}
	if cfg.Fetchd != nil && !filepath.IsAbs(cfg.Fetchd.CacheDir) {
		cfg.Fetchd.CacheDir = filepath.Join(d.dir, cfg.Fetchd.CacheDir) // relative to the config file
	}
	if b := d.single(blocks["auto_map"]); b != nil {
		cfg.AutoMap = d.autoMap(b)
	}
	cfg.StateDir = d.stateDir(c.Attributes, cfg.Fetchd, body.MissingItemRange())

	if cfg.Lane(DefaultLaneName) == nil {
		cfg.Lanes = append(cfg.Lanes, defaultLane(DefaultLaneName))
		d.lanes.declare(DefaultLaneName, hcl.Range{})
	}
	// The app block says what the built-in worker serves: it is needed
	// unless every lane runs a program of its own (exec or command).
	if appBlock == nil && len(blocks["app"]) == 0 && slices.ContainsFunc(cfg.Lanes, func(l Lane) bool { return !l.IsExec() && len(l.Command) == 0 }) {
		d.errorf(body.MissingItemRange(), "Missing app block",
			"An app block is required: add app { upstream = \"http://127.0.0.1:9000\" } to proxy to your application, or app { demo = true } for the built-in demo site.")
	}
	if cfg.App.Direct {
		for i := range cfg.Lanes {
			l := &cfg.Lanes[i]
			l.Direct = !l.IsExec() && len(l.Command) == 0
		}
	}
	d.resolve()

	// Both addresses are known (valid or default) and one was written. Port
	// 0 asks the kernel for a free port each time, so it cannot clash.
	listenOK = listenOK || listenAttr == nil
	if listenOK && adminListenOK && (listenAttr != nil || adminListenAttr != nil) && cfg.Listen == cfg.Admin.Listen && !strings.HasSuffix(cfg.Listen, ":0") {
		a := adminListenAttr
		if a == nil {
			a = listenAttr
		}
		d.errorf(a.Expr.Range(), "Address used twice",
			"listen and admin.listen are both %q; the admin listener needs its own address.", cfg.Listen)
	}
	return cfg
}

// single returns the first of blocks, reporting any further ones.
func (d *decoder) single(blocks []*hcl.Block) *hcl.Block {
	if len(blocks) == 0 {
		return nil
	}
	for _, b := range blocks[1:] {
		d.errorf(b.DefRange, "Duplicate "+b.Type+" block",
			"Only one %s block is allowed; the first is at %s.", b.Type, at(blocks[0].DefRange))
	}
	return blocks[0]
}

// resolve checks every lane and theme name used against those declared.
func (d *decoder) resolve() {
	for _, r := range d.refs {
		declared := d.lanes
		if r.kind == "theme" {
			declared = d.themes
		}
		if _, ok := declared.at[r.name]; ok {
			continue
		}
		list := "none"
		if len(declared.order) > 0 {
			q := make([]string, len(declared.order))
			for i, n := range declared.order {
				q[i] = `"` + n + `"`
			}
			list = strings.Join(q, ", ")
		}
		d.errorf(r.at, "Undeclared "+r.kind, "No %s %q is declared (declared: %s); add a %s %q block or use a declared name.",
			r.kind, r.name, list, r.kind, r.name)
	}
}

// checkName reports a lane or theme label that is malformed or declared twice.
func (d *decoder) checkName(b *hcl.Block, kind string, declared *names) {
	name, r := b.Labels[0], b.LabelRanges[0]
	if !nameRE.MatchString(name) {
		d.errorf(r, "Invalid "+kind+" name",
			"%q is not a valid %s name: use lowercase letters, digits, \"_\" and \"-\".", name, kind)
	}
	if first, dup := declared.declare(name, r); dup {
		d.errorf(r, "Duplicate "+kind,
			"A %s named %q is already declared at %s; give each %s a unique name.", kind, name, at(first), kind)
	}
}

func (d *decoder) front(b *hcl.Block, f *Front) {
	a := d.content(b.Body, frontSchema).Attributes
	d.duration(a, "read_timeout", &f.ReadTimeout, false)
	d.duration(a, "write_timeout", &f.WriteTimeout, false)
	d.duration(a, "idle_timeout", &f.IdleTimeout, false)
	d.intSize(a, "max_header_size", &f.MaxHeaderSize)
	d.intSize(a, "max_body_size", &f.MaxBodySize)
	d.integer(a, "max_conns", &f.MaxConns, 0)
	d.intSize(a, "client_body_buffer", &f.ClientBodyBuffer)
	d.intSize(a, "response_buffer", &f.ResponseBuffer)
	d.size(a, "max_temp_file", &f.MaxTempFile, true)
	if _, list, ranges, ok := d.strList(a, "retry_methods"); ok && list != nil {
		f.RetryMethods = 0
		for i, m := range list {
			bit := MethodBit(m)
			if bit == 0 {
				d.errorf(ranges[i], "Invalid method", "%q cannot be retried: retry_methods takes GET, HEAD, OPTIONS, PUT, DELETE, POST, PATCH and TRACE (upper case).", m)
				continue
			}
			f.RetryMethods |= bit
		}
	}
}

// admin decodes the admin block and reads its token file. It returns the
// listen attribute and whether it was valid, for the address clash check.
func (d *decoder) admin(b *hcl.Block, adm *Admin) (*hcl.Attribute, bool) {
	a := d.content(b.Body, adminSchema).Attributes
	listen, listenOK := d.listenAddr(a, "listen", &adm.Listen)
	d.integer(a, "max_conns", &adm.MaxConns, 1)
	var tf string
	if attr, ok := d.str(a, "token_file", &tf); ok && tf != "" {
		if !filepath.IsAbs(tf) {
			tf = filepath.Join(d.dir, tf)
		}
		data, err := readTokenFile(tf)
		token := strings.TrimSpace(string(data))
		switch {
		case err != nil:
			d.errorf(attr.Expr.Range(), "Cannot read token file", "%s; create it with the admin token, or remove token_file.", err)
		case token == "":
			d.errorf(attr.Expr.Range(), "Empty token file", "%s is empty; write the admin token in it, or remove token_file.", tf)
		default:
			adm.TokenFile, adm.Token = tf, token
		}
	}
	return listen, listen == nil || listenOK
}

func (d *decoder) log(b *hcl.Block, l *Log) {
	a := d.content(b.Body, logSchema).Attributes
	var s string
	if attr, ok := d.str(a, "level", &s); ok {
		if lvl := hclog.LevelFromString(s); lvl != hclog.NoLevel {
			l.Level = lvl
		} else {
			d.errorf(attr.Expr.Range(), "Invalid log level", "%q is not a log level: use trace, debug, info, warn, error or off.", s)
		}
	}
	if attr, ok := d.str(a, "format", &s); ok {
		switch s {
		case "text":
			l.JSON = false
		case "json":
			l.JSON = true
		default:
			d.errorf(attr.Expr.Range(), "Invalid log format", "%q is not a log format: use \"text\" or \"json\".", s)
		}
	}
	d.boolean(a, "access_log", &l.AccessLog)
	if attr, ok := d.str(a, "access_format", &s); ok {
		switch s {
		case "lanes":
			l.AccessFormat = AccessLanes
		case "combined":
			l.AccessFormat = AccessCombined
			// One stream: a text line among JSON ones breaks its parser.
			if l.JSON {
				d.errorf(attr.Expr.Range(), "Invalid access log format",
					"access_format = \"combined\" is a text format, and the access log shares lanesd's output: with format = \"json\", use access_format = \"lanes\" (JSON lines).")
			}
		default:
			d.errorf(attr.Expr.Range(), "Invalid access log format", "%q is not an access log format: use \"lanes\" or \"combined\".", s)
		}
	}
	d.boolean(a, "access_log_query", &l.AccessQuery)
}

func (d *decoder) app(b *hcl.Block, app *App) {
	a := d.content(b.Body, appSchema).Attributes
	var s string
	upstream, _ := d.str(a, "upstream", &s)
	if upstream != nil {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			d.errorf(upstream.Expr.Range(), "Invalid upstream",
				"%q is not an upstream URL: write \"http://HOST:PORT\" or \"https://HOST:PORT\".", s)
		} else if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			d.errorf(upstream.Expr.Range(), "Invalid upstream",
				"%q has more than a scheme, host and port: write %q; requests keep their own path.", s, u.Scheme+"://"+u.Host)
		} else {
			app.Upstream = u.Scheme + "://" + u.Host
		}
	}
	d.duration(a, "upstream_timeout", &app.UpstreamTimeout, false)
	if attr, ok := d.str(a, "theme", &app.Theme); ok && app.Theme != "" {
		d.refs = append(d.refs, ref{"theme", app.Theme, attr.Expr.Range()})
	}
	d.boolean(a, "underscores_in_headers", &app.UnderscoresInHeaders)
	if direct, ok := d.boolean(a, "direct", &app.Direct); ok && app.Direct {
		switch {
		case app.Theme != "":
			d.errorf(direct.Expr.Range(), "Invalid direct",
				"direct = true cannot go with theme = %q: a theme needs the worker hop (the worker themes the upstream's answers). Remove direct, or the theme.", app.Theme)
		case upstream == nil:
			d.errorf(direct.Expr.Range(), "Invalid direct",
				"direct = true makes the front proxy to the upstream itself: set upstream = \"http://HOST:PORT\" too.")
		}
	}
	demo, demoOK := d.boolean(a, "demo", &app.Demo)
	if demo != nil && !demoOK {
		return // already reported; which mode is meant is unknown
	}
	switch {
	case upstream == nil && !app.Demo:
		d.errorf(b.DefRange, "Invalid app block",
			"Set either upstream = \"http://HOST:PORT\" to proxy to your application, or demo = true for the built-in demo site.")
	case upstream != nil && app.Demo:
		d.errorf(b.DefRange, "Invalid app block",
			"Set only one of upstream and demo = true: the built-in worker either proxies or serves the demo site.")
	}
}

func (d *decoder) theme(b *hcl.Block) Theme {
	t := Theme{Name: b.Labels[0], Range: b.DefRange}
	d.checkName(b, "theme", d.themes)
	c := d.content(b.Body, themeSchema)
	if attr, ok := d.str(c.Attributes, "url", &t.URL); ok {
		t.URLRange = attr.Expr.Range()
		u, err := url.Parse(t.URL)
		valid := err == nil && (((u.Scheme == "http" || u.Scheme == "https") && u.Host != "") ||
			(u.Scheme == "file" && (u.Path != "" || u.Opaque != "")))
		if !valid {
			d.errorf(attr.Expr.Range(), "Invalid theme URL",
				"%q is not a theme URL: use http://, https://, file:///ABSOLUTE/PATH or file:PATH (relative to the config file), such as \"http://127.0.0.1:9001/theme.html\".", t.URL)
		} else if u.Scheme == "file" && u.Opaque != "" {
			// file:PATH is relative to the config file: made absolute here,
			// so fetchd and -check read the same file from any directory.
			t.URL = (&url.URL{Scheme: "file", Path: filepath.Join(d.dir, u.Opaque)}).String()
			if !filepath.IsAbs(d.dir) {
				if abs, err := filepath.Abs(filepath.Join(d.dir, u.Opaque)); err == nil {
					t.URL = (&url.URL{Scheme: "file", Path: abs}).String()
				}
			}
		}
	}
	for _, rb := range c.Blocks {
		r := ThemeRule{Kind: rb.Labels[0]}
		ra := d.content(rb.Body, ruleSchema).Attributes
		themeAttr, _ := d.str(ra, "theme", &r.Theme)
		contentAttr, _ := d.str(ra, "content", &r.Content)
		var needs string
		switch r.Kind {
		case "replace", "append":
			if themeAttr == nil || contentAttr == nil {
				needs = "theme = \"SELECTOR\" and content = \"SELECTOR\""
			}
		case "drop":
			if themeAttr == nil {
				needs = "theme = \"SELECTOR\""
			}
		case "title":
		default:
			d.errorf(rb.LabelRanges[0], "Invalid rule kind",
				"%q is not a rule kind: use replace, title, append or drop.", r.Kind)
		}
		if needs != "" {
			d.errorf(rb.DefRange, "Incomplete rule", "A %q rule needs %s.", r.Kind, needs)
		}
		t.Rules = append(t.Rules, r)
	}
	return t
}

func defaultFetchd() *Fetchd {
	return &Fetchd{
		CacheDir:     DefaultFetchdCacheDir,
		Workers:      DefaultFetchdWorkers,
		FetchTimeout: DefaultFetchdFetchTimeout,
		MinRefresh:   DefaultFetchdMinRefresh,
		StaleWait:    DefaultFetchdStaleWait,
		MaxStale:     DefaultFetchdMaxStale,
	}
}

func (d *decoder) fetchd(b *hcl.Block) *Fetchd {
	f := defaultFetchd()
	a := d.content(b.Body, fetchdSchema).Attributes
	var dir string
	if attr, ok := d.str(a, "cache_dir", &dir); ok {
		if dir == "" {
			d.errorf(attr.Expr.Range(), "Invalid cache_dir", "cache_dir must not be empty; name a directory such as %q.", DefaultFetchdCacheDir)
		} else {
			f.CacheDir = dir
		}
	}
	d.integer(a, "workers", &f.Workers, 1)
	d.duration(a, "fetch_timeout", &f.FetchTimeout, false)
	d.duration(a, "min_refresh", &f.MinRefresh, false)
	d.duration(a, "stale_wait", &f.StaleWait, true) // 0: serve a stale copy at once
	d.duration(a, "max_stale", &f.MaxStale, false)
	return f
}

func defaultLane(name string) Lane {
	return Lane{
		Name:           name,
		MinWorkers:     DefaultMinWorkers,
		MaxWorkers:     DefaultMinWorkers,
		Concurrency:    DefaultConcurrency,
		MaxQueue:       DefaultMaxQueue,
		QueueTimeout:   DefaultQueueTimeout,
		RequestTimeout: DefaultRequestTimeout,
		IdleTimeout:    DefaultLaneIdle,
	}
}

func (d *decoder) lane(b *hcl.Block) Lane {
	l := defaultLane(b.Labels[0])
	l.Range = b.DefRange
	d.checkName(b, "lane", d.lanes)
	a := d.content(b.Body, laneSchema).Attributes

	// The default lane takes every unmapped request, so it can never be
	// empty; another lane may be (its requests then wait for a resize).
	minFloor := 0
	if l.Name == DefaultLaneName {
		minFloor = 1
	}
	minAttr, minOK := d.integer(a, "min_workers", &l.MinWorkers, minFloor)
	maxAttr, maxOK := d.integer(a, "max_workers", &l.MaxWorkers, 1)
	switch {
	case maxAttr == nil && minOK:
		l.MaxWorkers = max(l.MinWorkers, 1)
	case minAttr == nil && maxOK:
		l.MinWorkers = min(DefaultMinWorkers, l.MaxWorkers)
	case minOK && maxOK && l.MinWorkers > l.MaxWorkers:
		d.errorf(minAttr.Expr.Range(), "Invalid worker counts",
			"min_workers = %d is more than max_workers = %d; raise max_workers or lower min_workers.", l.MinWorkers, l.MaxWorkers)
	}

	d.integer(a, "concurrency", &l.Concurrency, 1)
	d.integer(a, "max_queue", &l.MaxQueue, 0)
	d.duration(a, "queue_timeout", &l.QueueTimeout, false)
	d.duration(a, "request_timeout", &l.RequestTimeout, false)
	d.duration(a, "idle_timeout", &l.IdleTimeout, false)
	d.integer(a, "max_requests", &l.MaxRequests, 0)
	d.integer(a, "max_requests_jitter", &l.MaxRequestsJitter, 0)
	d.size(a, "max_rss", &l.MaxRSS, true)

	if _, pats, ranges, _ := d.strList(a, "map"); pats != nil {
		for i, s := range pats {
			p, err := ParsePattern(s)
			if err != nil {
				d.errorf(ranges[i], "Invalid pattern", "%s.", err)
				continue
			}
			if m, dup := d.mapped[p.String()]; dup {
				d.errorf(ranges[i], "Duplicate mapping",
					"%q is already mapped to lane %q at %s; map each pattern to one lane only.", p.String(), m.lane, at(m.at))
				continue
			}
			d.mapped[p.String()] = mapping{l.Name, ranges[i]}
			l.Map = append(l.Map, p)
		}
	}
	if _, cmd, ranges, ok := d.strList(a, "command"); ok && len(cmd) > 0 {
		if cmd[0] == "" {
			d.errorf(ranges[0], "Invalid command", "The first element of command is the program to run; it must not be empty.")
		} else if path, err := exec.LookPath(d.path(cmd[0])); err != nil {
			// Found on $PATH, or, with a slash, relative to the config
			// file's directory, like every path in the config.
			d.errorf(ranges[0], "Worker command not found", "%s; build it, or fix the path (a path with a slash is taken from the config file's directory, %s).", err, d.dir)
		} else if abs, err := filepath.Abs(path); err == nil && strings.Contains(cmd[0], "/") {
			cmd = append([]string{abs}, cmd[1:]...)
		}
		l.Command = cmd
	}
	d.exec(a, &l)
	return l
}

// path resolves a program path of the config: with a slash and relative,
// from the config file's directory; a bare name is left for $PATH.
func (d *decoder) path(p string) string {
	if strings.Contains(p, "/") && !filepath.IsAbs(p) {
		return filepath.Join(d.dir, p)
	}
	return p
}

// exec decodes an exec worker's attributes: the program (found on PATH,
// or relative to the config file's directory), how it gets its socket,
// when it is ready, and how it is stopped.
func (d *decoder) exec(a hcl.Attributes, l *Lane) {
	if a["exec"] != nil { // the defaults of exec workers
		l.ExecDir, l.ExecSocket, l.StopSignal, l.StopTimeout = d.dir, ExecSocketFD, DefaultStopSignal, DefaultStopTimeout
	}
	attr, argv, ranges, ok := d.strList(a, "exec")
	if ok && len(argv) == 0 {
		d.errorf(attr.Expr.Range(), "Invalid exec", "exec lists the program to run and its arguments, such as [\"gunicorn\", \"app:app\"]; it must not be empty.")
	}
	if ok && len(argv) > 0 {
		switch {
		case len(l.Command) > 0:
			d.errorf(attr.Expr.Range(), "Both command and exec",
				"A lane runs either a Go worker built on worker.Serve (command) or a program of any language (exec), not both.")
		case argv[0] == "":
			d.errorf(ranges[0], "Invalid exec", "The first element of exec is the program to run; it must not be empty.")
		default:
			prog := d.path(argv[0])
			if path, err := exec.LookPath(prog); err != nil {
				d.errorf(ranges[0], "Exec program not found",
					"%s; install it, or fix the path (a path with a slash is taken from the config file's directory, %s).", err, l.ExecDir)
				l.Exec = argv // still an exec lane: no app block is asked for
			} else {
				if abs, err := filepath.Abs(path); err == nil {
					path = abs // the program runs in ExecDir, not in lanesd's directory
				}
				l.Exec = append([]string{path}, argv[1:]...)
			}
		}
	}
	for _, name := range []string{"exec_socket", "exec_dir", "exec_env", "health_path", "ready", "stop_signal", "stop_timeout"} {
		if at, set := a[name]; set && a["exec"] == nil {
			d.errorf(at.NameRange, "Exec setting without exec", "%s applies to exec workers only: add exec = [\"program\", ...] to this lane, or remove it.", name)
		}
	}
	if at, set := d.str(a, "exec_socket", &l.ExecSocket); set && l.ExecSocket != ExecSocketFD && l.ExecSocket != ExecSocketPort {
		d.errorf(at.Expr.Range(), "Invalid exec_socket",
			"exec_socket = %q: use \"fd\" (a listening unix socket as fd 3, by systemd socket activation) or \"port\" (PORT=<a free loopback port>; the program binds it).", l.ExecSocket)
	}
	if at, set := d.str(a, "health_path", &l.HealthPath); set && !strings.HasPrefix(l.HealthPath, "/") {
		d.errorf(at.Expr.Range(), "Invalid health_path", "health_path = %q: write a path that starts with \"/\", such as \"/healthz\".", l.HealthPath)
	}
	if at, set := d.str(a, "ready", &l.Ready); set && l.Ready != ReadyNotify && l.Ready != "" {
		d.errorf(at.Expr.Range(), "Invalid ready",
			"ready = %q: the one value is \"notify\" (wait for READY=1 on NOTIFY_SOCKET); without it a worker is ready once health_path answers, or at once.", l.Ready)
	}
	if at, set := d.str(a, "stop_signal", &l.StopSignal); set {
		name := strings.ToUpper(l.StopSignal)
		if !strings.HasPrefix(name, "SIG") {
			name = "SIG" + name
		}
		if _, known := StopSignals[name]; !known {
			d.errorf(at.Expr.Range(), "Invalid stop_signal",
				"stop_signal = %q is not a signal lanes sends: use SIGTERM (the default), SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH or SIGKILL.", l.StopSignal)
		} else {
			l.StopSignal = name
		}
	}
	d.duration(a, "stop_timeout", &l.StopTimeout, false)
	d.execDir(a, l)
	d.execEnv(a, l)
}

// execDir decodes exec_dir, the program's working directory: relative to
// the config file's directory, and a directory that exists.
func (d *decoder) execDir(a hcl.Attributes, l *Lane) {
	var dir string
	at, set := d.str(a, "exec_dir", &dir)
	if !set {
		return
	}
	if dir == "" {
		d.errorf(at.Expr.Range(), "Invalid exec_dir", "exec_dir must not be empty: remove it to run the program in the config file's directory.")
		return
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(d.dir, dir)
	}
	if fi, err := os.Stat(dir); err != nil {
		d.errorf(at.Expr.Range(), "Invalid exec_dir", "%s (exec_dir is taken from the config file's directory, %s).", err, d.dir)
	} else if !fi.IsDir() {
		d.errorf(at.Expr.Range(), "Invalid exec_dir", "%s is not a directory.", dir)
	} else {
		l.ExecDir = dir
	}
}

// execEnv decodes exec_env, an object of variables for the program. The
// variables lanes sets itself are refused: the program would be misled
// about its socket or its lane.
func (d *decoder) execEnv(a hcl.Attributes, l *Lane) {
	at := a["exec_env"]
	if at == nil {
		return
	}
	pairs, diags := hcl.ExprMap(at.Expr)
	if diags.HasErrors() {
		d.errorf(at.Expr.Range(), "Invalid exec_env", "exec_env is an object of variables, such as { DJANGO_SETTINGS_MODULE = \"site.settings\" }.")
		return
	}
	env := map[string]string{}
	for _, kv := range pairs {
		var k, v string
		if ok, _ := d.value(kv.Key, "each name in exec_env", &k); !ok {
			continue
		}
		if ok, null := d.value(kv.Value, "exec_env."+k, &v); !ok {
			if null {
				d.errorf(kv.Value.Range(), "Invalid value", "exec_env.%s must not be null.", k)
			}
			continue
		}
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			d.errorf(kv.Key.Range(), "Invalid exec_env", "%q is not a variable name.", k)
		case strings.Contains(v, "\x00"):
			d.errorf(kv.Value.Range(), "Invalid exec_env", "exec_env.%s holds a NUL byte.", k)
		case shared.ExecEnvReserved(k):
			d.errorf(kv.Key.Range(), "Invalid exec_env",
				"%s is set by lanes for each worker (its socket, its lane, its readiness); it cannot be set in exec_env.", k)
		default:
			if _, dup := env[k]; dup {
				d.errorf(kv.Key.Range(), "Invalid exec_env", "%s is set twice.", k)
			}
			env[k] = v
		}
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		l.ExecEnv = append(l.ExecEnv, k+"="+env[k])
	}
}

func (d *decoder) autoMap(b *hcl.Block) *AutoMap {
	m := &AutoMap{ForgetAfter: DefaultAutoMapForgetAfter, MaxEntries: DefaultAutoMapMaxEntries}
	a := d.content(b.Body, autoMapSchema).Attributes
	d.duration(a, "threshold", &m.Threshold, false)
	if attr, ok := d.str(a, "lane", &m.Lane); ok {
		d.refs = append(d.refs, ref{"lane", m.Lane, attr.Expr.Range()})
	}
	if _, from, ranges, _ := d.strList(a, "from"); from != nil {
		for i, name := range from {
			d.refs = append(d.refs, ref{"lane", name, ranges[i]})
		}
		m.From = from
	}
	d.duration(a, "forget_after", &m.ForgetAfter, false)
	d.integer(a, "max_entries", &m.MaxEntries, 1)
	return m
}

// maxTokenFile bounds what is read as an admin token.
const maxTokenFile = 4 << 10

// readTokenFile reads a token file that is a regular file of at most
// maxTokenFile bytes: a device or a FIFO named by mistake (/dev/zero, a
// pipe) must not hang or exhaust lanesd at load time.
func readTokenFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist", path)
	}
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > maxTokenFile {
		return nil, fmt.Errorf("%s is %d bytes; a token file holds at most %d", path, fi.Size(), maxTokenFile)
	}
	return os.ReadFile(path)
}

// stateDir decodes state_dir and checks that lanesd can create and write
// it. A state_dir written in the file is taken from the config file's
// directory, and one that cannot be used is an error at its value. The
// default sits beside fetchd's cache_dir when fetchd runs (design.md), so
// it is resolved as cache_dir is, from lanesd's working directory; without
// fetchd it is data/state in the config file's directory. A default that
// cannot be used is only a warning, at the end of the file (where
// state_dir would go): lanesd then keeps mappings in memory only, as it did
// before state_dir existed.
func (d *decoder) stateDir(attrs hcl.Attributes, f *Fetchd, end hcl.Range) string {
	var dir string
	attr, ok := d.str(attrs, "state_dir", &dir)
	switch {
	case attr != nil && !ok:
		return ""
	case attr != nil && dir == "":
		d.errorf(attr.Expr.Range(), "Invalid state_dir", "state_dir must not be empty; name a directory such as %q.", DefaultStateDir)
		return ""
	case attr != nil:
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(d.dir, dir)
		}
		if err := checkWritableDir(dir); err != nil {
			d.errorf(attr.Expr.Range(), "Unusable state_dir", "%s; lanesd keeps runtime and learned mappings there: make it a directory lanesd can write, or name another.", err)
		}
		return dir
	case f != nil:
		dir = filepath.Join(filepath.Dir(f.CacheDir), "state")
	default:
		dir = filepath.Join(d.dir, DefaultStateDir)
	}
	if err := checkWritableDir(dir); err != nil {
		d.diags = append(d.diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "Unusable state_dir",
			Detail: fmt.Sprintf("%s; runtime and learned mappings will not survive a restart. Set state_dir to a directory lanesd can write.",
				err),
			Subject: end.Ptr(),
		})
	}
	return dir
}

// checkWritableDir says whether lanesd can use dir: it is a directory it
// can write into, or it does not exist and the nearest ancestor that does
// is one (so that it can be created). It creates nothing: -check has no
// side effects.
func checkWritableDir(dir string) error {
	const wOK, xOK = 2, 1 // access(2) modes
	for p := dir; ; {
		fi, err := os.Stat(p)
		if err == nil {
			switch {
			case !fi.IsDir():
				return fmt.Errorf("%s is not a directory", p)
			case syscall.Access(p, wOK|xOK) != nil:
				if p == dir {
					return fmt.Errorf("%s is not writable", p)
				}
				return fmt.Errorf("%s cannot be created: %s is not writable", dir, p)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return err
		}
		p = parent
	}
}
