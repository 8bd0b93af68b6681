// Package logging builds the hclog loggers every lanes process uses, so the
// supervisor, its workers and their plugins log in one shape.
package logging

import (
	"io"
	"log"
	"os"

	"github.com/hashicorp/go-hclog"
)

// New returns the root logger of a process.
func New(name string, level hclog.Level, json bool, w io.Writer) hclog.Logger {
	if w == nil {
		w = os.Stderr
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:            name,
		Level:           level,
		JSONFormat:      json,
		Output:          w,
		IncludeLocation: false,
	})
}

// Worker returns the logger of a worker process: JSON on stderr, which
// go-plugin on the supervisor side parses and re-logs under the worker's
// named sub-logger, levels intact. Stdout belongs to the go-plugin handshake.
func Worker(level string) hclog.Logger {
	l := hclog.LevelFromString(level)
	if l == hclog.NoLevel {
		l = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Level:      l,
		JSONFormat: true,
		Output:     os.Stderr,
	})
}

// Std adapts l to the *log.Logger that libraries such as fasthttp accept,
// inferring levels from "[ERROR]"-style prefixes.
func Std(l hclog.Logger) *log.Logger {
	return l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
}
