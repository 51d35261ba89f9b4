package process

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// lines collects Writes and lets a test wait for a count.
type lines struct {
	mu     sync.Mutex
	got    []string
	change chan struct{}
}

func newLines() *lines { return &lines{change: make(chan struct{}, 1)} }

func (l *lines) Write(b []byte) (int, error) {
	l.mu.Lock()
	l.got = append(l.got, string(b))
	l.mu.Unlock()
	select {
	case l.change <- struct{}{}:
	default:
	}
	return len(b), nil
}

func (l *lines) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

func (l *lines) waitCount(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(guard)
	for {
		if len(l.snapshot()) >= n {
			return
		}
		select {
		case <-l.change:
		case <-timeout:
			t.Fatalf("got %q, waited for %d lines", l.snapshot(), n)
		}
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestFollowResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.log")
	appendFile(t, path, "one\ntwo\n")

	w1 := newLines()
	f1, err := Follow(context.Background(), path, w1)
	if err != nil {
		t.Fatal(err)
	}
	w1.waitCount(t, 2)
	appendFile(t, path, "thr")
	appendFile(t, path, "ee\n")
	w1.waitCount(t, 3)
	if err := f1.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := f1.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if want := []string{"one\n", "two\n", "three\n"}; !reflect.DeepEqual(w1.snapshot(), want) {
		t.Fatalf("first follower got %q, want %q", w1.snapshot(), want)
	}

	// Written while nobody follows (the daemon is down).
	appendFile(t, path, "four\nfi")
	w2 := newLines()
	f2, err := Follow(context.Background(), path, w2)
	if err != nil {
		t.Fatal(err)
	}
	w2.waitCount(t, 1)
	appendFile(t, path, "ve\nsix")
	w2.waitCount(t, 2)
	if err := f2.Stop(); err != nil {
		t.Fatal(err)
	}
	// Stop passes on the unterminated last line.
	if want := []string{"four\n", "five\n", "six\n"}; !reflect.DeepEqual(w2.snapshot(), want) {
		t.Fatalf("second follower got %q, want %q", w2.snapshot(), want)
	}

	appendFile(t, path, "seven\n")
	w3 := newLines()
	f3, err := Follow(context.Background(), path, w3)
	if err != nil {
		t.Fatal(err)
	}
	if err := f3.Stop(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"seven\n"}; !reflect.DeepEqual(w3.snapshot(), want) {
		t.Fatalf("third follower got %q, want %q", w3.snapshot(), want)
	}
}

func TestFollowProcessOutput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.log")
	w := newLines()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The file does not exist yet.
	fl, err := Follow(ctx, out, w)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(Config{Path: "/bin/sh", Args: []string{"-c", `i=0; while [ $i -lt 500 ]; do echo "line $i"; i=$((i+1)); done; echo oops >&2`}, OutputPath: out})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	cancel()
	<-fl.Done()
	if err := fl.Stop(); err != nil {
		t.Fatal(err)
	}
	got := w.snapshot()
	if len(got) != 501 || got[0] != "line 0\n" || got[499] != "line 499\n" || got[500] != "oops\n" {
		t.Fatalf("got %d lines: first %q last %q", len(got), got[0], got[len(got)-1])
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m&^0o640 != 0 {
		t.Errorf("output file mode %v, want at most 0640", m)
	}
}

func TestFollowLongLineAndShrink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.log")
	long := strings.Repeat("x", maxLine+10)
	appendFile(t, path, long+"\nend\n")
	w := newLines()
	fl, err := Follow(context.Background(), path, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := fl.Stop(); err != nil {
		t.Fatal(err)
	}
	got := w.snapshot()
	if strings.Join(got, "") != long[:maxLine]+"\n"+long[maxLine:]+"\n"+"end\n" {
		t.Fatalf("long line split wrongly: %d writes", len(got))
	}

	// A file replaced by a shorter one is followed from its start.
	if err := os.WriteFile(path, []byte("new\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	w2 := newLines()
	fl2, err := Follow(context.Background(), path, w2)
	if err != nil {
		t.Fatal(err)
	}
	if err := fl2.Stop(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"new\n"}; !reflect.DeepEqual(w2.snapshot(), want) {
		t.Fatalf("got %q, want %q", w2.snapshot(), want)
	}
}

type failWriter struct{}

var errWrite = errors.New("disk full")

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestFollowErrors(t *testing.T) {
	if _, err := Follow(context.Background(), "/nonexistent/dir/out.log", nil); err == nil {
		t.Error("missing directory: no error")
	}
	path := filepath.Join(t.TempDir(), "out.log")
	appendFile(t, path, "a\n")
	fl, err := Follow(context.Background(), path, failWriter{})
	if err != nil {
		t.Fatal(err)
	}
	if err := fl.Stop(); !errors.Is(err, errWrite) {
		t.Errorf("Stop: err = %v, want the write error", err)
	}
}

// BenchmarkFollowLine measures the time from appending a line to the file
// until the follower has written it out.
func BenchmarkFollowLine(b *testing.B) {
	path := filepath.Join(b.TempDir(), "out.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	got := make(chan struct{}, 1)
	fl, err := Follow(context.Background(), path, writerFunc(func(p []byte) (int, error) {
		got <- struct{}{}
		return len(p), nil
	}))
	if err != nil {
		b.Fatal(err)
	}
	defer fl.Stop()
	line := []byte("a line of VM output\n")
	for b.Loop() {
		if _, err := f.Write(line); err != nil {
			b.Fatal(err)
		}
		<-got
	}
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

func TestFollowReplacedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.log")
	appendFile(t, path, "a\n")
	w := newLines()
	fl, err := Follow(context.Background(), path, w)
	if err != nil {
		t.Fatal(err)
	}
	w.waitCount(t, 1)
	// Same size as the old file: only the inode tells them apart.
	next := filepath.Join(dir, "next")
	appendFile(t, next, "b\n")
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	w.waitCount(t, 2)
	if err := fl.Stop(); err != nil {
		t.Fatal(err)
	}
	// Replaced while nobody follows.
	appendFile(t, next, "c\n")
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	fl2, err := Follow(context.Background(), path, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := fl2.Stop(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a\n", "b\n", "c\n"}; !reflect.DeepEqual(w.snapshot(), want) {
		t.Fatalf("got %q, want %q", w.snapshot(), want)
	}
}

// TestFollowMany follows more files than Linux allows inotify instances
// per user by default (128): all followers share one.
func TestFollowMany(t *testing.T) {
	const n = 200
	root := t.TempDir()
	ws := make([]*lines, n)
	fls := make([]*Follower, n)
	paths := make([]string, n)
	g0 := runtime.NumGoroutine()
	for i := range n {
		dir := filepath.Join(root, strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		paths[i] = filepath.Join(dir, "out.log")
		ws[i] = newLines()
		fl, err := Follow(context.Background(), paths[i], ws[i])
		if err != nil {
			t.Fatalf("follower %d: %v", i, err)
		}
		fls[i] = fl
	}
	// Idle followers hold no goroutine: the ones that looked at the
	// (missing) files at the start end.
	for deadline := time.Now().Add(guard); runtime.NumGoroutine()-g0 >= n/2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle followers hold %d goroutines", n, runtime.NumGoroutine()-g0)
		}
	}
	for i := range n {
		appendFile(t, paths[i], "line "+strconv.Itoa(i)+"\n")
	}
	for i := range n {
		ws[i].waitCount(t, 1)
		if err := fls[i].Stop(); err != nil {
			t.Fatal(err)
		}
		if got := ws[i].snapshot(); len(got) != 1 || got[0] != "line "+strconv.Itoa(i)+"\n" {
			t.Fatalf("follower %d got %q", i, got)
		}
	}
	files.mu.Lock()
	defer files.mu.Unlock()
	if len(files.subs) != 0 {
		t.Errorf("%d paths still subscribed after Stop", len(files.subs))
	}
}

// An idle follower holds no descriptor, of the file or of its sidecar:
// every fork of the daemon copies its descriptors, and a host follows a
// thousand quiet VMs. It opens the file again for the next lines.
func TestIdleFollowerHoldsNoDescriptor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.log")
	appendFile(t, path, "a\n")
	w := newLines()
	fl, err := Follow(context.Background(), path, w)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Stop()
	held := func() []string {
		var open []string
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, e := range ents {
			if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, path) {
				open = append(open, l)
			}
		}
		return open
	}
	for i, line := range []string{"a\n", "b\n", "c\n"} {
		if i > 0 {
			appendFile(t, path, line)
		}
		w.waitCount(t, i+1)
		for deadline := time.Now().Add(guard); len(held()) > 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("an idle follower holds %v", held())
			}
		}
	}
	if want := []string{"a\n", "b\n", "c\n"}; !reflect.DeepEqual(w.snapshot(), want) {
		t.Fatalf("got %q, want %q", w.snapshot(), want)
	}
}
