// Package version is what a lanes binary says it is: the main module's
// version and the VCS stamp that `go build` in a git checkout puts in the
// binary (runtime/debug.ReadBuildInfo). lanesd and lanectl print it for
// -version; lanesd exports it as the lanes_build_info metric.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info is one binary's build.
type Info struct {
	Version   string // the main module's version; "devel" for a build in a checkout without a tag
	Revision  string // vcs.revision; "" when the binary was not built in a checkout
	Time      string // vcs.time, RFC 3339; "" when unknown
	Modified  bool   // vcs.modified: built from a tree with uncommitted changes
	GoVersion string // the toolchain, e.g. go1.26.8
}

// Get reads the running binary's build information.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "devel", GoVersion: runtime.Version()}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	if in.Version == "" || in.Version == "(devel)" {
		in.Version = "devel"
	}
	if in.GoVersion == "" {
		in.GoVersion = runtime.Version()
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	return in
}

// Line is the -version line of program, e.g.
//
//	lanesd v0.3.1 revision 141c284e…, 2026-05-01T10:00:00Z, modified; go1.26.8 linux/amd64
func (in Info) Line(program string) string {
	rev := "revision unknown"
	if in.Revision != "" {
		rev = "revision " + in.Revision
		if in.Time != "" {
			rev += ", " + in.Time
		}
		if in.Modified {
			rev += ", modified"
		}
	}
	return fmt.Sprintf("%s %s %s; %s %s/%s", program, in.Version, rev, in.GoVersion, runtime.GOOS, runtime.GOARCH)
}
