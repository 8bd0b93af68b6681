package proc

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestPluginLog(t *testing.T) {
	var b bytes.Buffer
	base := hclog.New(&hclog.LoggerOptions{Name: "lanesd.lane.worker", Output: &b, Level: hclog.Info})
	l := pluginLog{base}.Named("lanesd")
	l.Error("plugin process exited", "plugin", "/bin/lanesd", "id", 42, "error", "signal: killed")
	l.Info("serving", "addr", "x", "timestamp", "2026-12-04T12:00:00.000Z")
	out := b.String()
	if strings.Contains(out, "plugin process exited") {
		t.Errorf("go-plugin's exit line was logged above debug:\n%s", out)
	}
	if !strings.Contains(out, "lanesd.lane.worker: serving") || strings.Contains(out, "worker.lanesd") || strings.Contains(out, "timestamp=") {
		t.Errorf("want the child's line under the worker's name without go-plugin's name or copied timestamp:\n%s", out)
	}
}
