package supervisor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// A stale run directory is removed only when it is a real directory owned
// by the current user: lanesd run as root must not delete another user's
// directory that matches the name, nor follow a symlink.
func TestCleanStaleRunDirsOnlyOwn(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	// A pid that no process has: one that has exited and been reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := []byte(strconv.Itoa(cmd.Process.Pid))
	mk := func(name string) string {
		d := filepath.Join(tmp, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "owner"), dead, 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	mine := mk("lanes-mine")
	other := mk("lanes-other")
	target := mk("elsewhere")
	link := filepath.Join(tmp, "lanes-link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	otherUID := os.Getuid() + 1
	if err := os.Lchown(other, otherUID, otherUID); err != nil {
		t.Skipf("cannot give a directory to another user (needs root): %v", err)
	}

	cleanStaleRunDirs(hclog.NewNullLogger())

	if _, err := os.Stat(mine); !os.IsNotExist(err) {
		t.Errorf("own stale run directory not removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "owner")); err != nil {
		t.Errorf("another user's directory was removed: %v", err)
	}
	if _, err := os.Lstat(link); err != nil {
		t.Errorf("a symlink named like a run directory was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(target, "owner")); err != nil {
		t.Errorf("the symlink's target was removed: %v", err)
	}
}
