// Package fetchd is the fetch daemon: the process that fetches external
// theme pages, keeps their last good copies in a badger cache on disk, and
// answers workers' theme lookups (shared.ThemeService) over a unix socket.
// A dead origin costs fetchd a fetch goroutine, never a request worker.
//
// lanesd starts it as a go-plugin child (Main is the process body,
// shared.FetchdEnv its environment), health-checks it through
// shared.Control, and reads its state through shared.StatusService on the
// same socket the workers use.
package fetchd

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/shared/logging"
)

const (
	// lockWait is how long a starting fetchd waits for the cache lock: the
	// fetchd it replaces may still be closing badger.
	lockWait = 5 * time.Second
	// stopTimeout bounds cancelling the fetch pool at exit.
	stopTimeout = 2 * time.Second
)

// Main is the body of the fetchd process and returns its exit status. It
// logs to stderr (JSON, like a worker): stdout carries go-plugin's
// handshake. It returns when the supervisor stops it (go-plugin's
// Shutdown); on SIGTERM it closes the cache and exits 0, and once the
// supervisor is gone it exits 3.
func Main() int {
	byHand := func() int {
		fmt.Fprintln(os.Stderr, "lanes fetchd: lanesd starts this process itself; it cannot be run by hand")
		return 1
	}
	if os.Getenv(shared.Handshake.MagicCookieKey) != shared.Handshake.MagicCookieValue {
		return byHand()
	}
	env, err := shared.DecodeFetchdEnv(os.Getenv)
	log := logging.Worker(env.LogLevel)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	if env.Socket == "" || env.Config == "" {
		return byHand()
	}
	wire, err := shared.ReadFetchdSettings(env.Config)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	set := settingsFromWire(wire)
	sizeRuntime()
	sock := env.Socket
	log = log.With("pid", os.Getpid())

	// An exit while fetching is safe: badger reopens intact after an
	// unclean exit.
	if !shared.WatchSupervisor(log, env.ParentPID) {
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

// sizeRuntime sizes the Go runtime and gRPC for fetchd: a mostly idle
// process whose resident size is a goal (≤ 40 MB with 1,000 cached pages
// of 50 KB, issue 16). It runs before any gRPC server or client exists.
func sizeRuntime() {
	// A heap goal of 1.5× the live heap instead of 2×: fetchd allocates in
	// bursts (a page fetched, parsed and stored; pages served) and can
	// afford the extra collections. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	// gRPC's default buffer pool jumps from 32 KB buffers to 1 MB ones, so
	// every page of 33 KB to 1 MB that fetchd marshalled took (and zeroed)
	// a 1 MB buffer, and the pool kept several: 2-7 MB of fetchd's heap
	// serving 50 KB pages. Every power of two up to 1 MB instead.
	if pool, err := mem.NewBinaryTieredBufferPool(8, 12, 13, 14, 15, 16, 17, 18, 19, 20); err == nil {
		experimental.SetDefaultBufferPool(pool)
	}
}

// settingsFromWire is the Settings the supervisor wrote as w.
func settingsFromWire(w shared.FetchdSettings) Settings {
	set := Settings{Fetchd: config.FetchdFromWire(w.Fetchd), Themes: make([]config.Theme, len(w.Themes))}
	for i, t := range w.Themes {
		set.Themes[i] = config.ThemeFromWire(t)
	}
	return set
}
