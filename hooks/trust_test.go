package hooks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// nobody owns the attacker's files in these tests.
const nobody = 65534

// A user who owns a directory on the way to a hook swaps a directory link
// there, between a safe hook and her own, while the daemon runs the hook
// over and over. Her script must never run: the path through her
// directory is refused whichever way the link points at the moment of the
// check, and what runs is the file that was checked.
func TestSymlinkSwapRace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the attacker's files must belong to another user")
	}
	base := t.TempDir()
	dir := filepath.Join(base, "vm")
	safe := filepath.Join(base, "safe")
	user := filepath.Join(base, "alice")
	evil := filepath.Join(user, "evil")
	marker := filepath.Join(base, "pwned")
	for _, d := range []string{dir, safe, user, evil} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(safe, "hook"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(evil, "hook"), []byte("#!/bin/sh\necho \"$(id -u)\" >> "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{user, evil, filepath.Join(evil, "hook")} {
		if err := os.Lchown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(user, "link")
	if err := os.Symlink(safe, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(link, "hook"), filepath.Join(dir, "start_network")); err != nil {
		t.Fatal(err)
	}

	// The attacker: rename(2) a fresh link over the old one, atomically,
	// pointing at the safe and at her own directory by turns.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tmp := filepath.Join(user, "link.tmp")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			target := safe
			if i%2 == 1 {
				target = evil
			}
			_ = os.Remove(tmp)
			if os.Symlink(target, tmp) == nil {
				_ = os.Lchown(tmp, nobody, nobody)
				_ = os.Rename(tmp, link)
			}
		}
	}()
	refused := 0
	for i := 0; i < 200; i++ {
		res := Run(context.Background(), Request{Env: Env{Name: "vm", State: "start_network", ConfigDir: dir}, Strict: StrictOn})
		if errors.Is(res.Err, ErrInsecure) {
			refused++
			if !strings.Contains(res.Err.Error(), user) {
				t.Errorf("refusal does not name the user's directory %s: %v", user, res.Err)
			}
		}
	}
	close(stop)
	wg.Wait()
	if b, err := os.ReadFile(marker); err == nil {
		t.Fatalf("the user's hook ran as uid %q", strings.TrimSpace(string(b)))
	}
	if refused != 200 {
		t.Errorf("%d of 200 runs refused; a path through a user's directory must always be", refused)
	}
}

// A script is run by its interpreter, which is checked like the script:
// an interpreter a user can replace is refused.
func TestInterpreterChecked(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the interpreter must belong to another user")
	}
	base := t.TempDir()
	dir := filepath.Join(base, "vm")
	user := filepath.Join(base, "alice")
	for _, d := range []string{dir, user} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sh, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	interp := filepath.Join(user, "sh")
	if err := os.WriteFile(interp, sh, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(interp, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(base, "ran")
	if err := os.WriteFile(filepath.Join(dir, "start_storage"), []byte("#!"+interp+"\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	res := run(t, context.Background(), Request{Env: Env{State: "start_storage", ConfigDir: dir}, Strict: StrictOn})
	if !errors.Is(res.Err, ErrInsecure) {
		t.Fatalf("hook with a user's interpreter: %+v, want refused", res)
	}
	if !strings.Contains(res.Err.Error(), interp) || !strings.Contains(res.Err.Error(), "owned by uid 65534") {
		t.Errorf("refusal %q does not name the interpreter and its owner", res.Err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the hook ran")
	}
	// The same interpreter owned by root runs the hook.
	if err := os.Chown(interp, 0, 0); err != nil {
		t.Fatal(err)
	}
	if res := run(t, context.Background(), Request{Env: Env{State: "start_storage", ConfigDir: dir}, Strict: StrictOn}); !res.OK() {
		t.Fatalf("hook with root's interpreter: %+v", res)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("the hook did not run")
	}
}

// A missing interpreter is a start failure that points at the #! line.
func TestMissingInterpreter(t *testing.T) {
	dir := hookDir(t)
	if err := os.WriteFile(filepath.Join(dir, "start_network"), []byte("#!/nonexistent/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	res := run(t, context.Background(), Request{Env: Env{State: "start_network", ConfigDir: dir}})
	if !errors.Is(res.Err, ErrStart) || !strings.Contains(res.Err.Error(), "/nonexistent/sh") || !strings.Contains(res.Err.Error(), "#! line") {
		t.Errorf("hook with a missing interpreter: %v", res.Err)
	}
}
