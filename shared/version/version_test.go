package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionFromBuildInfo(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"stamped", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.1"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "141c284e"}, {Key: "vcs.time", Value: "2026-05-01T10:00:00Z"}, {Key: "vcs.modified", Value: "false"},
		}}, "lanesd v0.3.1 revision 141c284e, 2026-05-01T10:00:00Z; go1.26.8 " + platform},
		{"modified", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "141c284e"}, {Key: "vcs.modified", Value: "true"},
		}}, "lanesd devel revision 141c284e, modified; go1.26.8 " + platform},
		{"no vcs", debug.BuildInfo{GoVersion: "go1.26.8"}, "lanesd devel revision unknown; go1.26.8 " + platform},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromBuildInfo(&tc.bi).Line("lanesd"); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// A test binary has build info too: Get never comes back empty.
func TestVersionGet(t *testing.T) {
	in := Get()
	if in.Version == "" || !strings.HasPrefix(in.GoVersion, "go") {
		t.Errorf("Get() = %+v", in)
	}
}
