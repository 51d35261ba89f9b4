package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/daemon"
)

// A background daemon whose VM directories did not all load still starts
// (exit 0, it runs), but the command that started it says how many did
// not, and where to look.
func TestBackgroundSaysWhichConfigsFailed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addVM("bad1", sleeper("cpus = zero;"))
	e.addVM("bad2", sleeper("memroy = 512;\ncpus = -1;"))
	_, errOut, code := e.run(vmstatedBin, e.flags()...)
	if b, err := os.ReadFile(e.pidfile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			e.addBackground(pid)
		}
	}
	if code != 0 {
		t.Fatalf("background vmstated exited %d: %s", code, errOut)
	}
	for _, want := range []string{"vmstated: 2 of 2 VM directories in " + e.root + " have config errors and were not loaded",
		"'vmstated -n -c " + e.root + "' lists them", filepath.Join(e.logDir, "vmstated.log")} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the parent said %q; want it to say %q", errOut, want)
		}
	}
	if strings.Count(errOut, "\n") != 1 {
		t.Errorf("want one line, got %q", errOut)
	}
}

// A socket path too long for a unix socket fails the start with the limit
// named, before anything is bound or locked.
func TestSocketPathTooLong(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sock := filepath.Join(e.dir, strings.Repeat("s", daemon.MaxSocketPath)+".sock")
	args := append(e.flags(), "-s", sock)
	_, errOut, code := e.run(vmstatedBin, args...)
	want := "a unix socket path has at most " + strconv.Itoa(daemon.MaxSocketPath) + " bytes on this system: pass a shorter one with -s"
	if code != 1 || !strings.Contains(errOut, want) || strings.Contains(errOut, "invalid argument") {
		t.Fatalf("vmstated with a %d-byte socket path: exit %d, %q; want 1 and %q", len(sock), code, errOut, want)
	}
	assertUnlocked(t, e.pidfile)
}
