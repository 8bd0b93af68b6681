// Package fetchd is the fetch daemon: the process that fetches external
// theme pages, keeps their last good copies in a badger cache on disk, and
// answers workers' theme lookups (shared.ThemeService) over a unix socket.
// A dead origin costs fetchd a fetch goroutine, never a request worker.
//
// lanesd starts it as a go-plugin child (Main is the process body, Env its
// environment), health-checks it through shared.Control, and reads its state
// through shared.StatusService on the same socket the workers use.
package fetchd

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
)

const (
	// lockWait is how long a starting fetchd waits for the cache lock: the
	// fetchd it replaces may still be closing badger.
	lockWait = 5 * time.Second
	// stopTimeout bounds cancelling the fetch pool at exit.
	stopTimeout = 2 * time.Second
)

// Env returns the environment entries that configure a fetchd child:
// EnvFetchdConfig, the path of a file beside the socket that holds its
// settings (the fetchd block and the themes, cache_dir made absolute: a
// file, because Linux caps one environment variable at 128 KiB and a site
// may have many themes), and EnvFetchdSocket, the unix socket the
// supervisor chose for ThemeService. The supervisor adds the go-plugin handshake cookie,
// EnvParentPID and EnvLogLevel as for a worker. cfg.Fetchd must be set
// (config sets it whenever the app uses a theme).
func Env(cfg *config.Config, socket string) ([]string, error) {
	if cfg.Fetchd == nil {
		return nil, fmt.Errorf("fetchd: config has no fetchd settings")
	}
	set := Settings{Fetchd: *cfg.Fetchd, Themes: cfg.Themes}
	if abs, err := filepath.Abs(set.Fetchd.CacheDir); err == nil {
		set.Fetchd.CacheDir = abs
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("fetchd: encode settings: %w", err)
	}
	file := filepath.Join(filepath.Dir(socket), "fetchd-settings.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return nil, fmt.Errorf("fetchd: write settings: %w", err)
	}
	return []string{
		shared.EnvFetchdConfig + "=" + file,
		shared.EnvFetchdSocket + "=" + socket,
	}, nil
}

// Main is the body of the fetchd process and returns its exit status. log
// must write to stderr (JSON, like a worker's): stdout carries go-plugin's
// handshake. It returns when the supervisor kills it (go-plugin's Shutdown),
// on SIGTERM, or exits 3 when the supervisor is gone.
func Main(log hclog.Logger) int {
	sock := os.Getenv(shared.EnvFetchdSocket)
	raw := os.Getenv(shared.EnvFetchdConfig)
	if sock == "" || raw == "" || os.Getenv(shared.Handshake.MagicCookieKey) != shared.Handshake.MagicCookieValue {
		fmt.Fprintln(os.Stderr, "lanes fetchd: lanesd starts this process itself; it cannot be run by hand")
		return 1
	}
	var set Settings
	b, err := os.ReadFile(raw)
	if err == nil {
		err = json.Unmarshal(b, &set)
	}
	if err != nil {
		log.Error("decode settings", "error", err)
		return 1
	}
	log = log.With("pid", os.Getpid())

	// An exit while fetching is safe: badger reopens intact after an
	// unclean exit.
	if !shared.WatchSupervisor(log) {
		return 3
	}

	cache, err := OpenCache(set.Fetchd.CacheDir, CacheOptions{Log: log.Named("cache"), LockWait: lockWait, MoveCorrupt: true})
	if err != nil {
		log.Error("cannot open the cache", "error", err)
		return 1
	}
	svc, err := NewService(cache, set, Options{Log: log.Named("theme")})
	if err != nil {
		_ = cache.Close()
		log.Error("cannot load the cache", "error", err)
		return 1
	}

	_ = os.Remove(sock) // a stale socket of a killed predecessor
	ln, err := net.Listen("unix", sock)
	if err != nil {
		_ = svc.Close(context.Background())
		_ = cache.Close()
		log.Error("listen on theme socket", "socket", sock, "error", err)
		return 1
	}
	_ = os.Chmod(sock, 0o600)
	gs := grpc.NewServer()
	shared.RegisterThemeService(gs, svc)
	go func() { _ = gs.Serve(ln) }()

	var once sync.Once
	stop := func() {
		once.Do(func() {
			gs.Stop()
			ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			if err := svc.Close(ctx); err != nil {
				log.Warn("stop", "error", err)
			}
			if err := cache.Close(); err != nil {
				log.Error("close cache", "error", err)
			}
			_ = os.Remove(sock)
		})
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		<-sigs
		log.Info("SIGTERM: closing the cache and exiting")
		stop()
		os.Exit(0)
	}()

	entries, size, _ := cache.Stats()
	log.Info("fetchd ready", "socket", sock, "cache_dir", set.Fetchd.CacheDir, "entries", entries, "bytes", size,
		"themes", len(set.Themes), "workers", set.Fetchd.Workers)
	svc.Prefetch()

	// plugin.Serve writes the handshake and blocks until the supervisor
	// kills the plugin; the theme socket already accepts by then.
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: shared.Handshake,
		Plugins:         shared.PluginMap(svc),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          log.Named("plugin"),
	})
	stop()
	return 0
}
