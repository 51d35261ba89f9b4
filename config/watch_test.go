package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// guard bounds every wait for a change: a deadlock guard, not a timing
// assertion.
const guard = 60 * time.Second

type watchFixture struct {
	t      *testing.T
	root   string
	w      *Watcher
	cancel context.CancelFunc
	done   chan error
}

func startWatcher(t *testing.T, root string, debounce time.Duration) *watchFixture {
	t.Helper()
	var mu sync.Mutex
	var logs []string
	opts := WatchOptions{
		LoadOptions: LoadOptions{DefaultHypervisor: HypervisorQEMU, Logf: func(f string, a ...any) {
			mu.Lock()
			logs = append(logs, fmt.Sprintf(f, a...))
			mu.Unlock()
		}},
		Debounce: debounce,
	}
	w, err := NewWatcher(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &watchFixture{t: t, root: root, w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { f.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-f.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(guard):
			t.Error("Run did not return")
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("watcher log:\n%s", strings.Join(logs, "\n"))
			mu.Unlock()
		}
	})
	return f
}

func (f *watchFixture) write(rel, content string) {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// replace writes content the way many editors do: a temporary file
// renamed over the config.
func (f *watchFixture) replace(rel, content string) {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	tmp := filepath.Join(filepath.Dir(p), ".config.swp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		f.t.Fatal(err)
	}
}

func (f *watchFixture) next() Change {
	f.t.Helper()
	select {
	case c, ok := <-f.w.Changes():
		if !ok {
			f.t.Fatal("Changes closed")
		}
		return c
	case <-time.After(guard):
		f.t.Fatal("no change within the guard time")
	}
	return Change{}
}

func (f *watchFixture) expect(kind ChangeKind, name string) Change {
	f.t.Helper()
	c := f.next()
	if c.Kind != kind || c.Name != name {
		f.t.Fatalf("got change %s %s (%v), want %s %s", c.Kind, c.Name, c.Diagnostics, kind, name)
	}
	return c
}

// barrier proves that nothing was reported since the last expected
// change: it adds a VM and requires that to be the very next change.
func (f *watchFixture) barrier(name string) {
	f.t.Helper()
	if err := os.Mkdir(filepath.Join(f.root, name), 0o755); err != nil {
		f.t.Fatal(err)
	}
	f.replace(filepath.Join(name, "config"), name+" { cpus = 1; }\n")
	f.expect(Added, name)
}

func TestWatcherLifecycle(t *testing.T) {
	root := t.TempDir()
	// One VM exists before the watcher starts.
	if err := os.MkdirAll(filepath.Join(root, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "db", "config"), []byte("db { memory = 1024; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := startWatcher(t, root, 200*time.Millisecond)
	if init := f.w.Initial(); len(init.VMs) != 1 || init.VMs["db"] == nil {
		t.Fatalf("initial = %v", init.VMs)
	}

	// Create a VM.
	f.write("web/config", "web { memory = 1024; depends = db; }\n")
	c := f.expect(Added, "web")
	if c.VM.MemoryMB != 1024 || c.Dir != filepath.Join(root, "web") {
		t.Errorf("added %+v", c.VM)
	}

	// Edit in place.
	f.write("web/config", "web { memory = 2048; depends = db; }\n")
	if c := f.expect(Changed, "web"); c.VM.MemoryMB != 2048 {
		t.Errorf("changed memory = %d", c.VM.MemoryMB)
	}

	// Replace by rename, as editors do.
	f.replace("web/config", "web { memory = 4096; depends = db; }\n")
	if c := f.expect(Changed, "web"); c.VM.MemoryMB != 4096 {
		t.Errorf("changed memory = %d", c.VM.MemoryMB)
	}

	// The same meaning, spelled differently: no change.
	f.write("web/config", "# the web server\nweb {\n  memory = 4GB\n  depends = [ db ]\n}\n")
	f.barrier("b1")

	// Break it: reported, with the old config still in force.
	f.write("web/config", "web { memory = lots; depends = db; }\n")
	c = f.expect(Invalid, "web")
	if c.VM == nil || c.VM.MemoryMB != 4096 {
		t.Errorf("invalid change does not carry the config in force: %+v", c.VM)
	}
	if len(c.Diagnostics) != 1 || c.Diagnostics[0].Key != "memory" || c.Diagnostics[0].Pos.Line != 1 {
		t.Errorf("diagnostics = %v", c.Diagnostics)
	}
	// Breaking it the same way again is no new report.
	f.write("web/config", "web { memory = lots;   depends = db; }\n")
	f.barrier("b2")

	// Fix it with the content in force: reported, so the error clears.
	f.write("web/config", "web { memory = 4096; depends = db; }\n")
	if c := f.expect(Changed, "web"); c.VM.MemoryMB != 4096 {
		t.Errorf("fixed memory = %d", c.VM.MemoryMB)
	}

	// A directory appears empty, then gets its config.
	if err := os.Mkdir(filepath.Join(root, "later"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.barrier("b3")
	f.write("later/config", "later { cpus = 2; }\n")
	f.expect(Added, "later")

	// Hidden directories and leftovers are ignored.
	f.write(".trash/config", "trash { cpus = 1; }\n")
	f.write("web.bak/config", "webbak { cpus = 1; }\n")
	f.barrier("b4")

	// Removing a VM another depends on: the dependent is invalid, keeping
	// its config.
	if err := os.RemoveAll(filepath.Join(root, "db")); err != nil {
		t.Fatal(err)
	}
	// Changes of one reload come in name order.
	c = f.expect(Removed, "db")
	if c.VM == nil || c.VM.Name != "db" {
		t.Errorf("removed carries %+v", c.VM)
	}
	c = f.expect(Invalid, "web")
	if c.VM == nil || !strings.Contains(c.Diagnostics.Error(), "no VM named db") {
		t.Errorf("dependent change = %+v %v", c.VM, c.Diagnostics)
	}

	// Remove the config file only.
	if err := os.Remove(filepath.Join(root, "later", "config")); err != nil {
		t.Fatal(err)
	}
	f.expect(Removed, "later")

	// A duplicate name: the new directory is invalid, the old VM keeps
	// its config and is reported invalid too.
	f.write("web/config", "web { memory = 4096; }\n")
	f.expect(Changed, "web")
	f.write("web2/config", "web { cpus = 1; }\n")
	c1, c2 := f.next(), f.next()
	if c1.Kind != Invalid || c2.Kind != Invalid || c1.Name != "web" || c2.Name != "web" || c1.Dir == c2.Dir {
		t.Fatalf("duplicate: got %s %s and %s %s", c1, c1.Diagnostics, c2, c2.Diagnostics)
	}
	if err := os.RemoveAll(filepath.Join(root, "web2")); err != nil {
		t.Fatal(err)
	}
	f.expect(Changed, "web")

	// Rescan with nothing changed: nothing reported.
	f.w.Rescan()
	f.barrier("b5")
}

func TestWatcherBurst(t *testing.T) {
	root := t.TempDir()
	f := startWatcher(t, root, 500*time.Millisecond)
	f.write("vm1/config", "vm1 { cpus = 1; }\n")
	f.expect(Added, "vm1")
	for i := 1; i <= 100; i++ {
		f.write("vm1/config", fmt.Sprintf("vm1 { cpus = 1; memory = %d; }\n", 1000+i))
	}
	if c := f.expect(Changed, "vm1"); c.VM.MemoryMB != 1100 {
		t.Errorf("memory = %d, want the last write's 1100", c.VM.MemoryMB)
	}
	f.barrier("b1")
}

func TestWatcherInclude(t *testing.T) {
	root := t.TempDir()
	tmpl := filepath.Join(t.TempDir(), "templates")
	if err := os.MkdirAll(tmpl, 0o755); err != nil {
		t.Fatal(err)
	}
	tmplFile := filepath.Join(tmpl, "small.conf")
	if err := os.WriteFile(tmplFile, []byte("memory = 512;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := startWatcher(t, root, 200*time.Millisecond)
	f.write("vm1/config", fmt.Sprintf("vm1 {\n  .include %q\n  cpus = 1;\n}\n", tmplFile))
	c := f.expect(Added, "vm1")
	if c.VM.MemoryMB != 512 || len(c.VM.Includes) != 1 || c.VM.Includes[0] != tmplFile {
		t.Fatalf("vm1 = memory %d includes %v", c.VM.MemoryMB, c.VM.Includes)
	}
	if err := os.WriteFile(tmplFile, []byte("memory = 768;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c := f.expect(Changed, "vm1"); c.VM.MemoryMB != 768 {
		t.Errorf("memory = %d after the template changed", c.VM.MemoryMB)
	}
	// Replace the template by rename.
	tmp := filepath.Join(tmpl, ".small.conf.tmp")
	if err := os.WriteFile(tmp, []byte("memory = 1024;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, tmplFile); err != nil {
		t.Fatal(err)
	}
	if c := f.expect(Changed, "vm1"); c.VM.MemoryMB != 1024 {
		t.Errorf("memory = %d after the template was replaced", c.VM.MemoryMB)
	}

	// A glob include: a file that comes to match it later is noticed.
	extra := filepath.Join(t.TempDir(), "extra")
	if err := os.MkdirAll(extra, 0o755); err != nil {
		t.Fatal(err)
	}
	f.write("vm2/config", fmt.Sprintf("vm2 {\n  cpus = 1;\n  .include(glob=true,try=true) %q\n}\n", filepath.Join(extra, "*.conf")))
	if c := f.expect(Added, "vm2"); c.VM.CPUs != 1 || c.VM.MemoryMB != DefaultQEMUMemoryMB {
		t.Errorf("vm2 = cpus %d memory %d", c.VM.CPUs, c.VM.MemoryMB)
	}
	if err := os.WriteFile(filepath.Join(extra, "mem.conf"), []byte("memory = 640;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c := f.expect(Changed, "vm2"); c.VM.MemoryMB != 640 {
		t.Errorf("vm2 memory = %d after a matching file appeared", c.VM.MemoryMB)
	}

	// An error inside an included file names that file.
	if err := os.WriteFile(tmplFile, []byte("memory = lots;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c = f.expect(Invalid, "vm1")
	if len(c.Diagnostics) != 1 || c.Diagnostics[0].Pos.File != tmplFile || c.Diagnostics[0].Key != "memory" {
		t.Errorf("diagnostics = %v", c.Diagnostics)
	}
}

// Some editors save by renaming the file to a backup and writing a new
// one: that is one change, never a removal.
func TestWatcherBackupRename(t *testing.T) {
	root := t.TempDir()
	f := startWatcher(t, root, 200*time.Millisecond)
	f.write("vm1/config", "vm1 { cpus = 1; }\n")
	f.expect(Added, "vm1")
	p := filepath.Join(root, "vm1", "config")
	if err := os.Rename(p, p+"~"); err != nil {
		t.Fatal(err)
	}
	f.write("vm1/config", "vm1 { cpus = 2; }\n")
	if err := os.Remove(p + "~"); err != nil {
		t.Fatal(err)
	}
	if c := f.expect(Changed, "vm1"); c.VM.CPUs != 2 {
		t.Errorf("cpus = %d", c.VM.CPUs)
	}
	f.barrier("b1")
}

// On an overflow (events lost) the watcher rescans everything: a change
// that caused no event is found, and lost watches come back.
func TestWatcherOverflowRescan(t *testing.T) {
	root := t.TempDir()
	f := startWatcher(t, root, 200*time.Millisecond)
	f.write("vm1/config", "vm1 { cpus = 1; }\n")
	f.expect(Added, "vm1")
	// Lose the watch on vm1, as if the kernel had dropped its events.
	if err := f.w.fsw.Remove(filepath.Join(root, "vm1")); err != nil {
		t.Fatal(err)
	}
	f.write("vm1/config", "vm1 { cpus = 2; }\n")
	f.w.fsw.Errors <- fsnotify.ErrEventOverflow
	if c := f.expect(Changed, "vm1"); c.VM.CPUs != 2 {
		t.Errorf("cpus = %d after the rescan", c.VM.CPUs)
	}
	// The watch is back: an edit is seen without help.
	f.write("vm1/config", "vm1 { cpus = 3; }\n")
	if c := f.expect(Changed, "vm1"); c.VM.CPUs != 3 {
		t.Errorf("cpus = %d", c.VM.CPUs)
	}
	// Rescan asked for (SIGHUP) finds changes the same way.
	if err := f.w.fsw.Remove(filepath.Join(root, "vm1")); err != nil {
		t.Fatal(err)
	}
	f.write("vm1/config", "vm1 { cpus = 4; }\n")
	f.w.Rescan()
	if c := f.expect(Changed, "vm1"); c.VM.CPUs != 4 {
		t.Errorf("cpus = %d after Rescan", c.VM.CPUs)
	}
}

func TestWatcherMissingRoot(t *testing.T) {
	if _, err := NewWatcher(filepath.Join(t.TempDir(), "nope"), WatchOptions{}); err == nil {
		t.Error("NewWatcher on a missing root succeeded")
	}
}

// Writes to a VM directory's other files (a disk image, a hook, a log)
// schedule no reload of its config; the config, an include next to it and
// the directory itself do. The watcher is not run, so its state can be
// read without a race: event is called as Run would call it.
func TestWatcherSchedulesOnlyConfigFiles(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "vm1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"config":        "vm1 {\n  .include \"" + filepath.Join(dir, "shared.conf") + "\"\n  cpus = 1;\n}\n",
		"shared.conf":   "memory = 512;\n",
		"disk.img":      "",
		"start_network": "#!/bin/sh\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w, err := NewWatcher(root, WatchOptions{LoadOptions: LoadOptions{DefaultHypervisor: HypervisorQEMU}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.fsw.Close()
	if _, ok := w.Initial().VMs["vm1"]; !ok {
		t.Fatalf("vm1 not loaded: %+v", w.Initial())
	}
	for _, tt := range []struct {
		file     string
		schedule bool
	}{
		{"disk.img", false},
		{"start_network", false},
		{"vm1.log", false},
		{"config", true},
		{"shared.conf", true},
	} {
		clear(w.pending)
		w.event(fsnotify.Event{Name: filepath.Join(dir, tt.file), Op: fsnotify.Write})
		if _, got := w.pending[dir]; got != tt.schedule {
			t.Errorf("a write to %s: reload scheduled %v, want %v", tt.file, got, tt.schedule)
		}
	}
}
