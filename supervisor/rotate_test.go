package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// backups lists the rotated files of log path, oldest first.
func backups(t *testing.T, path string) []string {
	t.Helper()
	r := newRotatingFile(path, 1, 0)
	prefix, ext := r.prefixAndExt()
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, prefix) && strings.HasSuffix(n, ext) {
			if _, err := time.Parse(backupTimeFormat, n[len(prefix):len(n)-len(ext)]); err == nil {
				names = append(names, n)
			}
		}
	}
	return names // ReadDir sorts by name, and the stamp sorts by time
}

func TestRotatingFileRotatesAndKeepsTheNewest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.log")
	// Another VM's log whose name starts like this one's: never pruned.
	other := filepath.Join(dir, "web-2-"+time.Now().Add(-time.Hour).Format(backupTimeFormat)+".log")
	if err := os.WriteFile(other, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRotatingFile(path, 1, 2)
	line := bytes.Repeat([]byte("a"), 1023)
	line = append(line, '\n')
	// 5.5 MiB in 1 KiB lines: five rotations.
	var all []byte
	for i := 0; i < 5*1024+512; i++ {
		l := append([]byte(nil), line...)
		l[0] = byte('A' + i%26)
		if _, err := r.Write(l); err != nil {
			t.Fatal(err)
		}
		all = append(all, l...)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	bs := backups(t, path)
	if len(bs) != 2 {
		t.Fatalf("backups %q, want the newest 2", bs)
	}
	var kept []byte
	for _, b := range bs {
		data, err := os.ReadFile(filepath.Join(dir, b))
		if err != nil {
			t.Fatal(err)
		}
		if len(data) != 1<<20 {
			t.Errorf("backup %s has %d bytes, want %d", b, len(data), 1<<20)
		}
		kept = append(kept, data...)
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) != 512<<10 {
		t.Errorf("log has %d bytes, want %d", len(cur), 512<<10)
	}
	kept = append(kept, cur...)
	if !bytes.Equal(kept, all[len(all)-len(kept):]) {
		t.Error("the backups and the log are not the newest lines in order")
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another VM's backup was touched: %v", err)
	}
}

func TestRotatingFileReopens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vm.log")
	if err := os.WriteFile(path, []byte("old\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	r := newRotatingFile(path, 1, 0)
	if _, err := r.Write([]byte("new\n")); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if b, _ := os.ReadFile(path); string(b) != "old\nnew\n" {
		t.Errorf("log = %q, want the old line kept and the new appended", b)
	}
	// A write that would fill an existing file rotates it on open, and
	// the new file keeps the old one's mode.
	big := append(bytes.Repeat([]byte("b"), 1<<20-4), '\n')
	r = newRotatingFile(path, 1, 0)
	if _, err := r.Write(big); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if bs := backups(t, path); len(bs) != 1 {
		t.Errorf("backups %q, want 1", bs)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(big)) || fi.Mode().Perm() != 0o640 {
		t.Errorf("log: %d bytes, mode %v; want %d bytes, mode 0640", fi.Size(), fi.Mode().Perm(), len(big))
	}
	if _, err := r.Write(make([]byte, 1<<20+1)); err == nil {
		t.Error("a write larger than the maximum size succeeded")
	}
}

func TestRotatingFileKeepsAllWithoutLimit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vm.log")
	r := newRotatingFile(path, 1, 0)
	chunk := append(bytes.Repeat([]byte("c"), 64<<10-1), '\n')
	for i := 0; i < 16*4+1; i++ { // four rotations, each within a millisecond or not
		if _, err := r.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	if bs := backups(t, path); len(bs) != 4 {
		t.Errorf("backups %q, want all 4", bs)
	}
}

// A log per VM must not hold a goroutine per VM (lumberjack's did).
func TestVMLogsHoldNoGoroutine(t *testing.T) {
	const n = 100
	dir := t.TempDir()
	g0 := runtime.NumGoroutine()
	for i := 0; i < n; i++ {
		l := newVMLog(filepath.Join(dir, fmt.Sprintf("vm%d.log", i)), 1, 5)
		l.Printf("line %d", i)
		t.Cleanup(func() { l.Close() })
	}
	if g := runtime.NumGoroutine() - g0; g >= n/2 {
		t.Errorf("%d written logs hold %d goroutines", n, g)
	}
}

// A VM's log follows its config's rotation settings, including a change
// of them, and log_max_files = 0 keeps every backup as documented.
func TestVMLogFollowsConfigLimits(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper+"\nlog_max_size = 1;\nlog_max_files = 1;")
	// About 1.2 MB of hook output per start: one rotation or more each time.
	noisy := "#!/bin/sh\ni=0\nwhile [ $i -lt 1200 ]; do printf '%01000d\\n' 0; i=$((i+1)); done\n"
	if err := os.WriteFile(filepath.Join(f.root, "vm0", "start_network"), []byte(noisy), 0o755); err != nil {
		t.Fatal(err)
	}
	f.sync()
	cycle := func() {
		t.Helper()
		if err := f.sup.Start(ctx(t), "vm0"); err != nil {
			t.Fatal(err)
		}
		f.waitState("vm0", sRunning)
		if err := f.sup.Stop(ctx(t), "vm0", StopOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		f.waitState("vm0", sStopped)
	}
	backups := func() int {
		m, _ := filepath.Glob(filepath.Join(f.base, "log", "vm0-*.log"))
		return len(m)
	}
	cycle()
	cycle()
	if n := backups(); n != 1 {
		t.Fatalf("%d backups with log_max_files = 1", n)
	}
	f.writeConfig("vm0", sleeper+"\nlog_max_size = 1;\nlog_max_files = 0;")
	f.sync()
	f.waitPending("vm0", false)
	cycle()
	cycle()
	if n := backups(); n < 3 {
		t.Fatalf("%d backups after log_max_files = 0 (keep all) and two more noisy starts", n)
	}
}

// Backup names are stamped in UTC: when daylight saving time ends, local
// clocks go back an hour, and a backup made 40 minutes after another
// would get a name that sorts before it (and be pruned first).
func TestBackupNamesAreUTC(t *testing.T) {
	r := newRotatingFile(filepath.Join(t.TempDir(), "web.log"), 1, 2)
	summer := time.FixedZone("CEST", 2*3600)
	winter := time.FixedZone("CET", 1*3600)
	first := time.Date(2026, 10, 25, 2, 30, 0, 0, summer)  // 00:30 UTC
	second := time.Date(2026, 10, 25, 2, 10, 0, 0, winter) // 01:10 UTC
	a, b := filepath.Base(r.backupName(first)), filepath.Base(r.backupName(second))
	if a != "web-2026-10-25T00-30-00.000.log" || b != "web-2026-10-25T01-10-00.000.log" {
		t.Fatalf("backup names %s, %s: want the UTC times", a, b)
	}
	if a >= b {
		t.Fatalf("the later backup %s sorts before %s", b, a)
	}
}

// A VM's log holds no descriptor once it has been quiet for a moment
// (every fork of the daemon copies them all), and the next line opens it
// again and lands after the others.
func TestQuietLogHoldsNoDescriptor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.log")
	l := newVMLog(path, 1, 5)
	defer l.Close()
	open := func() bool {
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, e := range ents {
			if p, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && p == path {
				return true
			}
		}
		return false
	}
	for i := range 3 {
		l.Printf("line %d", i)
		for deadline := time.Now().Add(time.Minute); open(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the log is still open a minute after line %d", i)
			}
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "[vmstated] line "); n != 3 || !strings.HasSuffix(string(b), "line 2\n") {
		t.Errorf("log holds:\n%s", b)
	}
}
