package hooks

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// trivialHook installs `#!/bin/sh\nexit 0` as the start_network hook.
func trivialHook(b *testing.B) (dir, path string) {
	b.Helper()
	dir = filepath.Join(b.TempDir(), "vm")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	path = filepath.Join(dir, "start_network")
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.Chmod(path, 0o755); err != nil {
		b.Fatal(err)
	}
	return dir, path
}

// BenchmarkRunTrivial measures a whole Run of a hook that does nothing:
// lookup and (as root) the ownership checks, environment, pipes, start,
// wait and output handling.
func BenchmarkRunTrivial(b *testing.B) {
	dir, _ := trivialHook(b)
	req := Request{Env: Env{Name: "bench", State: "start_network", ConfigDir: dir}}
	ctx := context.Background()
	for b.Loop() {
		if res := Run(ctx, req); !res.OK() {
			b.Fatal(res.Reason())
		}
	}
}

// BenchmarkOSExecTrivial runs the same hook with plain os/exec, the
// baseline for BenchmarkRunTrivial.
func BenchmarkOSExecTrivial(b *testing.B) {
	_, path := trivialHook(b)
	for b.Loop() {
		if err := exec.Command(path, "bench", "start_network").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunTrivialWithStatusFile is BenchmarkRunTrivial with the exit
// status recorded through the sh wrapper, as the daemon runs hooks.
func BenchmarkRunTrivialWithStatusFile(b *testing.B) {
	dir, _ := trivialHook(b)
	req := Request{Env: Env{Name: "bench", State: "start_network", ConfigDir: dir},
		StatusFile: filepath.Join(b.TempDir(), "status")}
	ctx := context.Background()
	for b.Loop() {
		if res := Run(ctx, req); !res.OK() {
			b.Fatal(res.Reason())
		}
	}
}
