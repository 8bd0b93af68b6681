package proc

import "github.com/hashicorp/go-hclog"

// pluginLog is the logger go-plugin gets for a child. It keeps what the
// child logs, at the child's levels, under the child's own name, and
// drops what only repeats lanes' own lines:
//   - "plugin process exited" (the lane's "worker exited" or "worker
//     killed" line says why, and a deliberate stop is no ERROR), at debug;
//   - the name go-plugin adds per binary ("lanesd.lane.worker.lanesd");
//   - the "timestamp" go-plugin copies from each child line next to the
//     line's own.
type pluginLog struct{ hclog.Logger }

func (l pluginLog) Named(string) hclog.Logger      { return l }
func (l pluginLog) ResetNamed(string) hclog.Logger { return l }
func (l pluginLog) With(args ...any) hclog.Logger  { return pluginLog{l.Logger.With(args...)} }
func (l pluginLog) Trace(msg string, args ...any)  { l.Log(hclog.Trace, msg, args...) }
func (l pluginLog) Debug(msg string, args ...any)  { l.Log(hclog.Debug, msg, args...) }
func (l pluginLog) Info(msg string, args ...any)   { l.Log(hclog.Info, msg, args...) }
func (l pluginLog) Warn(msg string, args ...any)   { l.Log(hclog.Warn, msg, args...) }
func (l pluginLog) Error(msg string, args ...any)  { l.Log(hclog.Error, msg, args...) }

func (l pluginLog) Log(level hclog.Level, msg string, args ...any) {
	switch msg {
	case "plugin process exited", "plugin exited":
		level = hclog.Debug
	}
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == "timestamp" {
			args = append(args[:i:i], args[i+2:]...)
			break
		}
	}
	l.Logger.Log(level, msg, args...)
}
