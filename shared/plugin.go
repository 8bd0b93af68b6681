// Package shared is the contract between the lanes supervisor and the
// processes it runs: the go-plugin handshake, the environment each child is
// started with (childenv.go), and the control-plane service (health, stats,
// drain) carried over go-plugin's gRPC. Requests themselves never cross
// this contract: they travel over the data plane, one unix socket per
// worker.
//
// shared imports nothing else of lanes except its own sub-packages, and not
// shared/config: every custom worker links shared, and none should link HCL
// (config converts its types to the plain wire types here instead).
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

// HeaderFilterTime is the response header in which a worker reports its
// filter time in microseconds; the front removes it before answering.
const HeaderFilterTime = "X-Lanes-Filter-Us"

// PluginMap is the plugin set both sides register.
func PluginMap(impl Control) map[string]plugin.Plugin {
	return map[string]plugin.Plugin{PluginName: &ControlPlugin{Impl: impl}}
}
