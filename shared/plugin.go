// Package shared is the contract between the lanes supervisor and the
// processes it runs: the go-plugin handshake, the environment a worker is
// started with, and the control-plane service (health, stats, drain) carried
// over go-plugin's gRPC. Requests themselves never cross this contract: they
// travel over the data plane, one unix socket per worker.
//
// shared imports nothing else of lanes except its own sub-packages.
package shared

import (
	"github.com/hashicorp/go-plugin"
)

// Handshake is the go-plugin handshake both sides must agree on. Bump
// ProtocolVersion when the control service changes incompatibly.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "LANES_WORKER",
	MagicCookieValue: "9c1f6c0e-lanes-worker",
}

// PluginName is the name the control service is dispensed under.
const PluginName = "worker"

// Environment of a worker process, set by the supervisor.
const (
	// EnvSocket is the unix socket path the worker serves its data plane on.
	EnvSocket = "LANES_SOCKET"
	// EnvParentPID is the supervisor's pid; a worker whose parent changes
	// exits (the second layer beside Pdeathsig).
	EnvParentPID = "LANES_PARENT_PID"
	// EnvLane is the name of the lane the worker serves.
	EnvLane = "LANES_LANE"
	// EnvLogLevel is the hclog level name for the worker's own log.
	EnvLogLevel = "LANES_LOG_LEVEL"
	// EnvApp is the JSON encoding of config.App, for the built-in worker.
	EnvApp = "LANES_APP"
	// EnvTheme is the JSON encoding of WorkerTheme: the app's theme, for
	// the built-in worker. Unset: no theme.
	EnvTheme = "LANES_THEME"
	// EnvDebugHeaders is "1" when the config's debug_headers is on (the
	// worker then answers X-Theme).
	EnvDebugHeaders = "LANES_DEBUG_HEADERS"
	// EnvMaxHeaderSize and EnvMaxBodySize carry the front's limits so the
	// worker's server accepts whatever the front accepted.
	EnvMaxHeaderSize = "LANES_MAX_HEADER_SIZE"
	EnvMaxBodySize   = "LANES_MAX_BODY_SIZE"
)

// HeaderFilterTime is the response header in which a worker reports its
// filter time in microseconds; the front removes it before answering.
const HeaderFilterTime = "X-Lanes-Filter-Us"

// PluginMap is the plugin set both sides register.
func PluginMap(impl Control) map[string]plugin.Plugin {
	return map[string]plugin.Plugin{PluginName: &ControlPlugin{Impl: impl}}
}
