// Command lanesd is the lanes supervisor. It also runs, through hidden
// subcommands, as its own children: "worker", the built-in worker process
// of a lane, "fetchd", the fetch daemon, and "exec-shim", the parent of
// each exec worker (a program of any language; see package proc). Each child reads the
// environment the supervisor gave it (shared.WorkerEnv, shared.FetchdEnv).
//
//	lanesd -config FILE           run the supervisor
//	lanesd -config FILE -check    validate FILE: print OK, or every problem, and exit 1
//	lanesd -version               print the version and VCS revision
//
// Under systemd, lanesd speaks sd_notify and takes its listeners from
// socket activation (package supervisor/systemd; deploy/ has the units).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/lanes-dev/lanes/fetchd"
	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/shared/logging"
	"github.com/lanes-dev/lanes/shared/version"
	"github.com/lanes-dev/lanes/supervisor"
	"github.com/lanes-dev/lanes/supervisor/proc"
	"github.com/lanes-dev/lanes/supervisor/systemd"
	"github.com/lanes-dev/lanes/worker"
	"github.com/lanes-dev/lanes/worker/app"
	"github.com/lanes-dev/lanes/worker/theme"
)

// workerCommand is the subcommand lanesd runs itself as for a lane's
// built-in worker.
const workerCommand = "worker"

// startThemeWait bounds the theme check at start.
const startThemeWait = 2 * time.Second

// fetchdCommand is the subcommand lanesd runs itself as for fetchd.
const fetchdCommand = "fetchd"

func main() {
	if len(os.Args) > 1 && os.Args[1] == workerCommand {
		runWorker()
		return
	}
	if len(os.Args) > 1 && os.Args[1] == fetchdCommand {
		os.Exit(fetchd.Main())
	}
	if len(os.Args) > 1 && os.Args[1] == proc.ShimCommand {
		os.Exit(proc.ShimMain(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: lanesd [-config FILE] [-check]
       lanesd -version

lanesd runs the lanes supervisor: the front, the lanes and their workers,
and the admin listener, until SIGTERM or SIGINT; SIGHUP reloads FILE.
Under systemd it speaks sd_notify and takes its listeners from socket
activation (sockets named front and admin); see deploy/ and the README.

flags:
`

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lanesd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	path := fs.String("config", "configs/example.hcl", "config `file` (HCL); a relative path is relative to the working directory, not to lanesd")
	check := fs.Bool("check", false, "validate the config and exit: OK, or every problem and exit status 1.\nSafe on a live host: a cache_dir held by the running lanesd is a warning")
	showVersion := fs.Bool("version", false, "print the version and VCS revision, and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // -h, -help: the usage was asked for
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lanesd: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Get().Line("lanesd"))
		return 0
	}
	cfg, diags := config.Load(*path)
	if diags.HasErrors() || cfg == nil {
		config.WriteDiagnostics(stderr, diags)
		return 1
	}
	if *check {
		// A theme must be fetchable now or cached: -check fetches it.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		diags = append(diags, checkThemes(ctx, cfg)...)
		cancel()
		config.WriteDiagnostics(stderr, diags)
		if diags.HasErrors() {
			return 1
		}
		fmt.Fprintln(stdout, "OK")
		return 0
	}
	log := logging.New("lanesd", cfg.Log.Level, cfg.Log.JSON, stderr)
	// Before any child starts: the sockets systemd passed, and LISTEN_*
	// cleared so that no child takes them for its own.
	lns, err := systemd.TakeListeners()
	if err != nil {
		log.Error("start", "error", err)
		return 1
	}
	defer lns.Close()
	notify := systemd.NewNotifier(log)
	for _, d := range diags {
		log.Warn("config", "warning", diagLine(d))
	}
	if cfg.App.Theme != "" {
		// At start the same finding as -check is a warning: the site runs
		// unthemed until the theme can be had. It runs before fetchd opens
		// the cache, and a hung theme origin delays the start by at most
		// startThemeWait: fetchd keeps trying, and logs when it gets one.
		ctx, cancel := context.WithTimeout(context.Background(), min(cfg.Fetchd.FetchTimeout, startThemeWait))
		for _, d := range checkThemes(ctx, cfg) {
			log.Warn("theme", "warning", diagLine(d))
		}
		cancel()
	}
	exe, err := os.Executable()
	if err != nil {
		log.Error("cannot find own executable for the built-in worker", "error", err)
		return 1
	}
	sup, err := supervisor.New(cfg, supervisor.Options{Log: log, Builtin: []string{exe, workerCommand}, Shim: []string{exe, proc.ShimCommand}, Fetchd: []string{exe, fetchdCommand},
		FetchdCacheInUse: fetchd.CacheInUse, LogOutput: stderr, Listeners: lns, Notify: notify})
	if err != nil {
		log.Error("start", "error", err)
		return 1
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go handleSignals(log, stop, sup)
	if err := sup.Run(ctx); err != nil {
		log.Error("lanesd stopped", "error", err)
		return 1
	}
	return 0
}

// handleSignals is the process's one signal loop.
func handleSignals(log hclog.Logger, stop context.CancelFunc, sup *supervisor.Supervisor) {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR2)
	stopping := false
	for sig := range ch {
		switch sig {
		case syscall.SIGTERM, syscall.SIGINT:
			if stopping {
				log.Warn("second stop signal: stopping immediately", "signal", sigName(sig))
				sup.Abort()
				continue
			}
			stopping = true
			log.Info("graceful stop", "signal", sigName(sig))
			stop()
		case syscall.SIGQUIT:
			log.Warn("immediate stop", "signal", sigName(sig))
			sup.Abort()
		case syscall.SIGHUP:
			log.Info("reloading config", "signal", sigName(sig))
			go sup.Reload() //nolint:errcheck // Reload logs what it did or why not
		case syscall.SIGTTIN:
			sup.Step(+1)
		case syscall.SIGTTOU:
			sup.Step(-1)
		case syscall.SIGUSR2:
			log.Info("draining every lane", "signal", sigName(sig))
			sup.DrainAll()
		}
	}
}

// runWorker is the built-in worker: the app of the config's app block,
// served on the socket the supervisor named.
func runWorker() {
	env, err := shared.DecodeWorkerEnv(os.Getenv)
	log := logging.Worker(env.LogLevel)
	if err != nil {
		log.Error("cannot start", "error", err)
		os.Exit(1)
	}
	if env.App == nil {
		fmt.Fprintln(os.Stderr, "lanesd worker: started without an app config; lanesd runs this itself")
		os.Exit(1)
	}
	opts := []app.Option{app.WithLane(env.Lane)}
	if env.DebugHeaders {
		opts = append(opts, app.WithDebugHeaders(true))
	}
	if wt := env.Theme; wt != nil {
		svc, closeSvc, err := shared.DialThemeService(env.FetchdSocket)
		if err != nil {
			log.Warn("fetchd unreachable; serving unthemed", "error", err)
		} else {
			defer closeSvc()
			opts = append(opts, app.WithTheme(config.ThemeFromWire(wt.Theme), svc,
				theme.Options{AskTimeout: theme.AskTimeout(wt.StaleWait)}))
		}
	}
	a, err := app.New(config.AppFromWire(*env.App), log, opts...)
	if err != nil {
		log.Error("app", "error", err)
		os.Exit(1)
	}
	go a.WarmTheme(context.Background())
	if err := worker.ServeWith(a.Handler, worker.Options{Log: log}); err != nil {
		fmt.Fprintln(os.Stderr, "lanesd worker:", err)
		os.Exit(1)
	}
}

// checkThemes finds the app's theme fetchable or cached (fetchd.Check) and
// its rules' selectors valid.
func checkThemes(ctx context.Context, cfg *config.Config) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for i := range cfg.Themes {
		t := &cfg.Themes[i]
		if err := theme.Validate(*t); err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid theme rule",
				Detail: err.Error() + ".", Subject: t.Range.Ptr()})
		}
	}
	if cfg.App.Theme == "" || diags.HasErrors() {
		return diags
	}
	return append(diags, fetchd.Check(ctx, cfg)...)
}

// diagLine is d as -check prints it: d.Error() would begin "<nil>: " for a
// finding with no place in the file (a cache_dir in use).
func diagLine(d *hcl.Diagnostic) string {
	var b strings.Builder
	config.WriteDiagnostics(&b, hcl.Diagnostics{d})
	return strings.TrimSuffix(b.String(), "\n")
}

// sigName spells a signal the one way lanes logs it ("SIGUSR2").
func sigName(sig os.Signal) string {
	if s, ok := sig.(syscall.Signal); ok {
		return shared.SignalName(s)
	}
	return sig.String()
}
