package worker

import (
	"os/exec"
	"strings"
	"testing"
)

// A custom worker links this package and shared, and must not link HCL and
// cty with them: they are the supervisor's, for its config, and cost every
// worker binary size and start time. shared/config (their way in) converts
// to shared's plain wire types instead.
func TestNoHCLInCustomWorkers(t *testing.T) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH: cannot list a custom worker's dependencies")
	}
	out, err := exec.Command(gotool, "list", "-deps", "../examples/hello-worker", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %q", deps)
	}
	for _, p := range deps {
		if strings.Contains(p, "hashicorp/hcl") || strings.Contains(p, "zclconf/go-cty") || strings.HasSuffix(p, "lanes/shared/config") {
			t.Errorf("a custom worker depends on %s", p)
		}
	}
}
