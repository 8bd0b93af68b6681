package supervisor

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/lanes-dev/lanes/shared/version"
)

func TestVersionBuildInfoMetric(t *testing.T) {
	for _, tc := range []struct {
		in   version.Info
		want string
	}{
		{version.Info{Version: "v1.2.3", Revision: "141c284e", GoVersion: "go1.26.8"},
			`lanes_build_info{goversion="go1.26.8",revision="141c284e",version="v1.2.3"} 1`},
		{version.Info{Version: "devel", Revision: "141c284e", Modified: true, GoVersion: "go1.26.8"},
			`lanes_build_info{goversion="go1.26.8",revision="141c284e-modified",version="devel"} 1`},
		{version.Info{Version: "devel", GoVersion: "go1.26.8"},
			`lanes_build_info{goversion="go1.26.8",revision="unknown",version="devel"} 1`},
	} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(buildInfo(tc.in))
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 {
			t.Fatalf("gather: %v, %d families", err, len(mfs))
		}
		var b strings.Builder
		if _, err := expfmt.MetricFamilyToText(&b, mfs[0]); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "\n"+tc.want+"\n") {
			t.Errorf("got\n%swant the line %s", b.String(), tc.want)
		}
	}
}
