package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// guard bounds every wait in these tests. It is a deadlock guard, not a
// speed assertion: it is far longer than any run should take.
const guard = 60 * time.Second

// hookDir makes a VM config directory (mode 0755, as a root-owned
// /etc/vmstated/<vm> would be) inside a fresh temp dir.
func hookDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "vm")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// installHook copies testdata/<fixture> to <dir>/<state> with mode.
func installHook(t *testing.T, dir, state, fixture string, mode os.FileMode) string {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, state)
	if err := os.WriteFile(path, body, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // the umask may have cut bits
		t.Fatal(err)
	}
	return path
}

// lineLog is a writer that keeps every Write as one record and notes any
// Write that is not exactly one newline-terminated line.
type lineLog struct {
	mu     sync.Mutex
	lines  []string
	bad    []string
	onLine func(string)
}

func (l *lineLog) Write(p []byte) (int, error) {
	s := string(p)
	l.mu.Lock()
	if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
		l.bad = append(l.bad, s)
	}
	line := strings.TrimSuffix(s, "\n")
	l.lines = append(l.lines, line)
	cb := l.onLine
	l.mu.Unlock()
	if cb != nil {
		cb(line)
	}
	return len(p), nil
}

func (l *lineLog) snapshot() (lines, bad []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines), slices.Clone(l.bad)
}

// stream returns the lines of one stream with their tag removed.
func (l *lineLog) stream(prefix string) []string {
	lines, _ := l.snapshot()
	var out []string
	for _, line := range lines {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			out = append(out, rest)
		}
	}
	return out
}

// run runs the hook for state in dir with the deadlock guard around it.
func run(t *testing.T, ctx context.Context, req Request) Result {
	t.Helper()
	if req.Env.Name == "" {
		req.Env.Name = "testvm"
	}
	done := make(chan Result, 1)
	go func() { done <- Run(ctx, req) }()
	select {
	case res := <-done:
		return res
	case <-time.After(guard):
		t.Fatalf("Run did not return within %s", guard)
		return Result{}
	}
}

func TestFind(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		strict  bool
		want    bool // a path is returned
		wantErr error
		hint    string // the error text must contain this
	}{
		{name: "missing", setup: func(*testing.T, string) {}},
		{name: "executable", want: true, setup: func(t *testing.T, dir string) {
			installHook(t, dir, "start_network", "ok.sh", 0o755)
		}},
		{name: "not executable", wantErr: ErrNotExecutable, hint: "chmod +x", setup: func(t *testing.T, dir string) {
			installHook(t, dir, "start_network", "ok.sh", 0o644)
		}},
		{name: "directory", wantErr: ErrIsDirectory, hint: "is a directory", setup: func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "start_network"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "dangling link", wantErr: ErrDanglingLink, hint: "does not exist", setup: func(t *testing.T, dir string) {
			if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "start_network")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "link to executable", want: true, strict: true, setup: func(t *testing.T, dir string) {
			installHook(t, dir, "real", "ok.sh", 0o755)
			if err := os.Symlink("real", filepath.Join(dir, "start_network")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "named pipe", wantErr: ErrNotRegular, hint: "named pipe", setup: func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "start_network"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "strict, 0755 in a 0755 dir", want: true, strict: true, setup: func(t *testing.T, dir string) {
			installHook(t, dir, "start_network", "ok.sh", 0o755)
		}},
		{name: "strict, world-writable hook", strict: true, wantErr: ErrInsecure, hint: "writable by others", setup: func(t *testing.T, dir string) {
			installHook(t, dir, "start_network", "ok.sh", 0o757)
		}},
		{name: "strict, group-writable hook", strict: true, wantErr: ErrInsecure, hint: "chmod g-w", setup: func(t *testing.T, dir string) {
			installHook(t, dir, "start_network", "ok.sh", 0o775)
		}},
		{name: "lax, world-writable hook", want: true, setup: func(t *testing.T, dir string) {
			installHook(t, dir, "start_network", "ok.sh", 0o777)
		}},
		{name: "strict, world-writable dir", strict: true, wantErr: ErrInsecure, hint: "directory ", setup: func(t *testing.T, dir string) {
			installHook(t, dir, "start_network", "ok.sh", 0o755)
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "strict, link target in a world-writable dir", strict: true, wantErr: ErrInsecure, hint: "shared is writable", setup: func(t *testing.T, dir string) {
			other := filepath.Join(filepath.Dir(dir), "shared")
			if err := os.Mkdir(other, 0o755); err != nil {
				t.Fatal(err)
			}
			installHook(t, other, "net", "ok.sh", 0o755)
			if err := os.Chmod(other, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(other, "net"), filepath.Join(dir, "start_network")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := hookDir(t)
			tt.setup(t, dir)
			path, err := Find(dir, "start_network", tt.strict)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Find error = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.hint) {
					t.Errorf("error %q does not say %q", err, tt.hint)
				}
				return
			}
			if err != nil {
				t.Fatalf("Find: %v", err)
			}
			if (path != "") != tt.want {
				t.Fatalf("Find path = %q, want found=%v", path, tt.want)
			}
			if tt.want && path != filepath.Join(dir, "start_network") {
				t.Errorf("Find path = %q", path)
			}
		})
	}
}

func TestFindOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	for _, target := range []string{"hook", "dir"} {
		t.Run(target, func(t *testing.T) {
			dir := hookDir(t)
			path := installHook(t, dir, "start_storage", "ok.sh", 0o755)
			chown := path
			if target == "dir" {
				chown = dir
			}
			if err := os.Chown(chown, 1000, 1000); err != nil {
				t.Fatal(err)
			}
			_, err := Find(dir, "start_storage", true)
			if !errors.Is(err, ErrInsecure) {
				t.Fatalf("Find error = %v, want ErrInsecure", err)
			}
			if !strings.Contains(err.Error(), "owned by uid 1000") || !strings.Contains(err.Error(), chown) {
				t.Errorf("error %q does not name %s and its owner", err, chown)
			}
			// Run in the default mode refuses it too, as the tests run as root.
			res := run(t, context.Background(), Request{Env: Env{State: "start_storage", ConfigDir: dir}})
			if !errors.Is(res.Err, ErrInsecure) || res.OK() {
				t.Errorf("Run as root: %+v, want refused", res)
			}
		})
	}
}

func TestFindBadInput(t *testing.T) {
	dir := hookDir(t)
	tests := []struct {
		scriptPath, state string
		want              error
	}{
		{dir, "", ErrInvalid},
		{dir, "..", ErrInvalid},
		{dir, ".", ErrInvalid},
		{dir, "../start", ErrInvalid},
		{dir, "a\x00b", ErrInvalid},
		{"relative/dir", "start_network", ErrInvalid},
		{"", "start_network", ErrInvalid},
		{filepath.Join(dir, "absent"), "start_network", ErrNoScriptDir},
		{installHook(t, dir, "file", "ok.sh", 0o755), "start_network", ErrNoScriptDir},
	}
	for _, tt := range tests {
		_, err := Find(tt.scriptPath, tt.state, false)
		if !errors.Is(err, tt.want) {
			t.Errorf("Find(%q, %q) error = %v, want %v", tt.scriptPath, tt.state, err, tt.want)
		}
	}
}

func TestRunOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		fixture  string // "" = no hook
		mode     os.FileMode
		ok       bool
		skipped  bool
		exit     int
		signal   string
		wantErr  error
		reason   string
		stdout   []string
		stderr   []string
		setupDir func(t *testing.T, dir string)
	}{
		{name: "success", fixture: "ok.sh", mode: 0o755, ok: true, exit: 0,
			reason: "hook start_storage succeeded",
			stdout: []string{"hello from testvm start_storage"}, stderr: []string{"a warning"}},
		{name: "non-zero exit", fixture: "exit3.sh", mode: 0o755, exit: 3, wantErr: ErrFailed,
			reason: "hook start_storage exited with status 3", stderr: []string{"storage not ready"}},
		{name: "killed by signal", fixture: "killself.sh", mode: 0o755, exit: -1, signal: "SIGKILL", wantErr: ErrFailed,
			reason: "hook start_storage was killed by signal SIGKILL"},
		{name: "missing", ok: true, skipped: true, reason: "hook start_storage not present, skipped"},
		{name: "not executable", fixture: "ok.sh", mode: 0o644, exit: -1, wantErr: ErrNotExecutable, reason: "is not executable: run chmod +x"},
		{name: "no interpreter line", fixture: "noshebang.sh", mode: 0o755, exit: -1, wantErr: ErrStart, reason: "#! line"},
		{name: "directory", exit: -1, wantErr: ErrIsDirectory, reason: "is a directory", setupDir: func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "start_storage"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "dangling symlink", exit: -1, wantErr: ErrDanglingLink, reason: "dangling", setupDir: func(t *testing.T, dir string) {
			if err := os.Symlink("gone", filepath.Join(dir, "start_storage")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := hookDir(t)
			if tt.fixture != "" {
				installHook(t, dir, "start_storage", tt.fixture, tt.mode)
			}
			if tt.setupDir != nil {
				tt.setupDir(t, dir)
			}
			log := &lineLog{}
			res := run(t, context.Background(), Request{
				Env:    Env{State: "start_storage", ConfigDir: dir},
				Output: log,
			})
			if res.OK() != tt.ok || res.Skipped != tt.skipped || res.ExitCode != tt.exit || res.Signal != tt.signal {
				t.Errorf("result = %+v; want ok=%v skipped=%v exit=%d signal=%q", res, tt.ok, tt.skipped, tt.exit, tt.signal)
			}
			if tt.wantErr != nil && !errors.Is(res.Err, tt.wantErr) {
				t.Errorf("Err = %v, want %v", res.Err, tt.wantErr)
			}
			if res.Hook != "start_storage" {
				t.Errorf("Hook = %q", res.Hook)
			}
			if r := res.Reason(); !strings.Contains(r, tt.reason) || strings.Contains(r, "\n") {
				t.Errorf("Reason() = %q, want one line containing %q", r, tt.reason)
			}
			if got := log.stream("[hook start_storage] "); !slices.Equal(got, tt.stdout) {
				t.Errorf("stdout lines = %q, want %q", got, tt.stdout)
			}
			if got := log.stream("[hook start_storage stderr] "); !slices.Equal(got, tt.stderr) {
				t.Errorf("stderr lines = %q, want %q", got, tt.stderr)
			}
			if _, bad := log.snapshot(); len(bad) > 0 {
				t.Errorf("writes that were not one line: %q", bad)
			}
		})
	}
}

func TestRunTimeout(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
		timeout time.Duration
		stopped string // the last signal Run had to send
	}{
		// SIGTERM ends it, whether sh has reached sleep yet or not.
		{name: "sleeps past timeout", fixture: "sleep.sh", timeout: 300 * time.Millisecond, stopped: "SIGTERM"},
		// It prints "started" only once its trap is set; see below.
		{name: "ignores SIGTERM", fixture: "ignoreterm.sh", timeout: 2 * time.Second, stopped: "SIGKILL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := hookDir(t)
			installHook(t, dir, "start_network", tt.fixture, 0o755)
			log := &lineLog{}
			res := run(t, context.Background(), Request{
				Env:     Env{State: "start_network", ConfigDir: dir},
				Timeout: tt.timeout,
				Grace:   300 * time.Millisecond,
				Output:  log,
			})
			if res.OK() || !res.TimedOut || res.Canceled || !errors.Is(res.Err, ErrTimeout) {
				t.Fatalf("result = %+v, want a timeout", res)
			}
			out := log.stream("[hook start_network] ")
			if tt.stopped == "SIGKILL" && len(out) == 0 {
				t.Skip("the machine is so loaded that the hook did not set its trap before the timeout")
			}
			if res.Stopped != tt.stopped || res.Signal != tt.stopped || res.ExitCode != -1 {
				t.Errorf("Stopped = %q, Signal = %q, ExitCode = %d; want %s", res.Stopped, res.Signal, res.ExitCode, tt.stopped)
			}
			want := fmt.Sprintf("hook start_network timed out after %s", fmtDuration(tt.timeout))
			if r := res.Reason(); !strings.HasPrefix(r, want) || !strings.Contains(r, tt.stopped) {
				t.Errorf("Reason() = %q, want %q... naming %s", r, want, tt.stopped)
			}
			if res.Duration < tt.timeout {
				t.Errorf("Duration %s is shorter than the timeout %s", res.Duration, tt.timeout)
			}
			if len(out) > 1 || (len(out) == 1 && out[0] != "started") {
				t.Errorf("stdout = %q", out)
			}
		})
	}
}

// TestRunCanceledIgnoresSIGTERM cancels a hook that ignores SIGTERM once it
// is known to ignore it: the process group gets SIGKILL after the grace.
func TestRunCanceledIgnoresSIGTERM(t *testing.T) {
	dir := hookDir(t)
	installHook(t, dir, "stop_network", "ignoreterm.sh", 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := &lineLog{onLine: func(line string) {
		if strings.HasSuffix(line, "] started") {
			cancel()
		}
	}}
	res := run(t, ctx, Request{
		Env:     Env{State: "stop_network", ConfigDir: dir},
		Timeout: 10 * time.Minute,
		Grace:   200 * time.Millisecond,
		Output:  log,
	})
	if !res.Canceled || res.Stopped != "SIGKILL" || res.Signal != "SIGKILL" || !errors.Is(res.Err, ErrCanceled) {
		t.Fatalf("result = %+v, want canceled and killed with SIGKILL", res)
	}
	if r := res.Reason(); !strings.Contains(r, "canceled after") || !strings.Contains(r, "killed with SIGKILL") {
		t.Errorf("Reason() = %q", r)
	}
}

// readPid reads a number a hook wrote into its config dir.
func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("bad pid in %s: %q", path, b)
	}
	return pid
}

func TestRunBackgroundChildHoldsPipe(t *testing.T) {
	// With no delay the hook usually exits before reader goroutines start;
	// with one, they are running when it exits. Both paths must finish.
	for _, tc := range []struct{ fixture, delay string }{
		{"background.sh", "0"}, {"background.sh", "0.2"},
		{"chatty.sh", "0"}, {"chatty.sh", "0.2"},
	} {
		t.Run(tc.fixture+"/delay="+tc.delay, func(t *testing.T) {
			dir := hookDir(t)
			installHook(t, dir, "start_network", tc.fixture, 0o755)
			log := &lineLog{}
			res := run(t, context.Background(), Request{
				Env: Env{State: "start_network", ConfigDir: dir, Config: map[string]string{"delay": tc.delay}},
				// Were Run waiting for the pipe to close, it would hit this.
				Timeout: 10 * time.Minute,
				Output:  log,
			})
			pgid := readPid(t, filepath.Join(dir, "pgid"))
			t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
			if !res.OK() || res.TimedOut {
				t.Fatalf("result = %+v, want success", res)
			}
			// The child is left running: a hook may start a daemon.
			if err := syscall.Kill(-pgid, 0); err != nil {
				t.Errorf("the hook's background child is gone: %v", err)
			}
			lines, bad := log.snapshot()
			// The child may print before the hook's own line does.
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "[hook start_network] left a") }) {
				t.Errorf("the hook's own line is missing; first lines = %q", lines[:min(3, len(lines))])
			}
			if len(bad) > 0 {
				t.Errorf("writes that were not one line: %q", bad[:min(3, len(bad))])
			}
			// Nothing reaches the writer once Run has returned.
			before := len(lines)
			time.Sleep(100 * time.Millisecond)
			if after, _ := log.snapshot(); len(after) != before {
				t.Errorf("%d lines written after Run returned", len(after)-before)
			}
		})
	}
}

func TestRunBigOutput(t *testing.T) {
	dir := hookDir(t)
	installHook(t, dir, "start_storage", "bigoutput.sh", 0o755)
	log := &lineLog{}
	res := run(t, context.Background(), Request{Env: Env{State: "start_storage", ConfigDir: dir}, Output: log})
	if !res.OK() {
		t.Fatalf("result = %+v", res)
	}
	const n = 52429
	pad := strings.Repeat("x", 83)
	for _, s := range []struct{ prefix, word string }{
		{"[hook start_storage] ", "out"},
		{"[hook start_storage stderr] ", "err"},
	} {
		got := log.stream(s.prefix)
		if len(got) != n {
			t.Errorf("%s: %d lines, want %d", s.word, len(got), n)
		}
		for i, line := range got {
			if want := fmt.Sprintf("%s %06d %s", s.word, i, pad); line != want {
				t.Fatalf("%s line %d = %.40q..., want %.40q...", s.word, i, line, want)
			}
		}
	}
	if _, bad := log.snapshot(); len(bad) > 0 {
		t.Errorf("%d writes were not one line", len(bad))
	}
}

func TestRunInterleavedStreams(t *testing.T) {
	dir := hookDir(t)
	installHook(t, dir, "start_storage", "interleave.sh", 0o755)
	log := &lineLog{}
	res := run(t, context.Background(), Request{Env: Env{State: "start_storage", ConfigDir: dir}, Output: log})
	if !res.OK() {
		t.Fatalf("result = %+v", res)
	}
	lines, bad := log.snapshot()
	if len(bad) > 0 {
		t.Errorf("writes that were not one line: %q", bad[:min(3, len(bad))])
	}
	if len(lines) != 4000 {
		t.Errorf("%d lines, want 4000", len(lines))
	}
	for _, s := range []struct{ prefix, word string }{
		{"[hook start_storage] ", "out"},
		{"[hook start_storage stderr] ", "err"},
	} {
		got := log.stream(s.prefix)
		for i, line := range got {
			if want := fmt.Sprintf("%s-%d-tail", s.word, i); line != want {
				t.Fatalf("%s line %d = %q, want %q (merged or lost)", s.word, i, line, want)
			}
		}
		if len(got) != 2000 {
			t.Errorf("%s: %d lines, want 2000", s.word, len(got))
		}
	}
}

func TestRunLongLine(t *testing.T) {
	dir := hookDir(t)
	installHook(t, dir, "start_storage", "longline.sh", 0o755)
	log := &lineLog{}
	res := run(t, context.Background(), Request{Env: Env{State: "start_storage", ConfigDir: dir}, Output: log})
	if !res.OK() {
		t.Fatalf("result = %+v", res)
	}
	got := log.stream("[hook start_storage] ")
	// 200 KiB comes out as pieces of MaxLine; the unterminated last line
	// still arrives.
	want := []string{
		strings.Repeat("a", MaxLine), strings.Repeat("a", MaxLine), strings.Repeat("a", MaxLine),
		strings.Repeat("a", 204800-3*MaxLine), "last line without newline",
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %d bytes %.20q, want %d bytes %.20q", i, len(got[i]), got[i], len(want[i]), want[i])
		}
	}
}

func TestRunEnvironment(t *testing.T) {
	dir := hookDir(t)
	path := installHook(t, dir, "stop_storage", "env.sh", 0o755)
	t.Setenv("VMSTATED_LEAK_CHECK", "must not reach the hook")
	env := Env{
		Name:          "web",
		State:         "stop_storage",
		PreviousState: "stopping",
		Reason:        "stop requested by uid 0",
		ConfigDir:     dir,
		PID:           4242,
		Restarts:      2,
		Config: map[string]string{
			"memory":       "2048",
			"qemu.accel":   "tcg",
			"hook-timeout": "60",
			"owner":        "alice smith",
			"bad":          "nul\x00byte",
			"":             "empty key",
		},
	}
	res := run(t, context.Background(), Request{Env: env})
	if !res.OK() {
		t.Fatalf("result = %+v", res)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	want := map[string]string{
		"PATH":                      PATH,
		"VMSTATED_NAME":             "web",
		"VMSTATED_STATE":            "stop_storage",
		"VMSTATED_PREVIOUS_STATE":   "stopping",
		"VMSTATED_REASON":           "stop requested by uid 0",
		"VMSTATED_CONFIG_DIR":       dir,
		"VMSTATED_PID":              "4242",
		"VMSTATED_RESTARTS":         "2",
		"VMSTATED_CFG_MEMORY":       "2048",
		"VMSTATED_CFG_QEMU_ACCEL":   "tcg",
		"VMSTATED_CFG_HOOK_TIMEOUT": "60",
		"VMSTATED_CFG_OWNER":        "alice smith",
		"VMSTATED_HOOK":             path,
	}
	// The shell adds a few variables of its own; nothing else may appear.
	shellOwn := map[string]bool{"PWD": true, "OLDPWD": true, "SHLVL": true, "_": true}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(read("env.out")), "\n") {
		k, v, _ := strings.Cut(line, "=")
		if !shellOwn[k] {
			got[k] = v
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected variable %s=%q", k, got[k])
		}
	}
	if cwd := strings.TrimSpace(read("cwd.out")); cwd != dir {
		t.Errorf("cwd = %q, want %q", cwd, dir)
	}
	// A script runs through its descriptor: $0 is /dev/fd/N, the
	// arguments are the VM and the state.
	if args := read("args.out"); !regexp.MustCompile(`^/dev/fd/[0-9]+\nweb\nstop_storage\n$`).MatchString(args) {
		t.Errorf("argv = %q", args)
	}
	if stdin := read("stdin.out"); stdin != "" {
		t.Errorf("stdin gave %q, want nothing (/dev/null)", stdin)
	}
}

func TestEnvironWithoutPID(t *testing.T) {
	for _, kv := range (Env{Name: "a", State: "stopped"}).Environ() {
		if strings.HasPrefix(kv, "VMSTATED_PID=") {
			t.Errorf("VMSTATED_PID set without a hypervisor: %q", kv)
		}
	}
}

func TestConfigVar(t *testing.T) {
	tests := []struct{ key, want string }{
		{"memory", "VMSTATED_CFG_MEMORY"},
		{"qemu.disk.path", "VMSTATED_CFG_QEMU_DISK_PATH"},
		{"max-restart", "VMSTATED_CFG_MAX_RESTART"},
		{"Ünïcode", "VMSTATED_CFG__N_CODE"},
		{"a b=c", "VMSTATED_CFG_A_B_C"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := ConfigVar(tt.key); got != tt.want {
			t.Errorf("ConfigVar(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestRunCanceled(t *testing.T) {
	dir := hookDir(t)
	installHook(t, dir, "start_network", "sleep.sh", 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancel once the hook is known to run, as a daemon shutdown would.
	log := &lineLog{onLine: func(line string) {
		if strings.HasSuffix(line, "] started") {
			cancel()
		}
	}}
	res := run(t, ctx, Request{
		Env:     Env{State: "start_network", ConfigDir: dir},
		Timeout: 10 * time.Minute,
		Output:  log,
	})
	if res.OK() || !res.Canceled || res.TimedOut || !errors.Is(res.Err, ErrCanceled) {
		t.Fatalf("result = %+v, want canceled", res)
	}
	if res.Stopped != "SIGTERM" || res.Signal != "SIGTERM" {
		t.Errorf("Stopped = %q, Signal = %q, want SIGTERM", res.Stopped, res.Signal)
	}
	if r := res.Reason(); !strings.HasPrefix(r, "hook start_network canceled after ") {
		t.Errorf("Reason() = %q", r)
	}

	// A context that is already done does not start the hook at all.
	res = run(t, ctx, Request{Env: Env{State: "start_network", ConfigDir: dir}, Output: log})
	if !res.Canceled || !errors.Is(res.Err, ErrCanceled) || res.Duration != 0 {
		t.Errorf("result = %+v, want canceled before start", res)
	}
}

func TestRunConcurrent(t *testing.T) {
	// Many VMs' hooks at once, one of them hanging: the others finish.
	hang := hookDir(t)
	installHook(t, hang, "start_network", "sleep.sh", 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	hung := make(chan Result, 1)
	go func() {
		hung <- Run(ctx, Request{Env: Env{Name: "stuck", State: "start_network", ConfigDir: hang}, Timeout: 10 * time.Minute})
	}()

	const n = 16
	var wg sync.WaitGroup
	results := make([]Result, n)
	logs := make([]*lineLog, n)
	dirs := make([]string, n)
	for i := range n {
		dirs[i] = hookDir(t)
		installHook(t, dirs[i], "start_storage", "ok.sh", 0o755)
	}
	for i, dir := range dirs {
		logs[i] = &lineLog{}
		wg.Go(func() {
			results[i] = Run(context.Background(), Request{
				Env:    Env{Name: fmt.Sprintf("vm%d", i), State: "start_storage", ConfigDir: dir},
				Output: logs[i],
			})
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatal("concurrent hooks did not finish")
	}
	for i, res := range results {
		want := fmt.Sprintf("hello from vm%d start_storage", i)
		if !res.OK() || !slices.Equal(logs[i].stream("[hook start_storage] "), []string{want}) {
			t.Errorf("vm%d: %+v, output %q", i, res, logs[i].lines)
		}
	}
	cancel()
	select {
	case res := <-hung:
		if !res.Canceled {
			t.Errorf("hanging hook: %+v", res)
		}
	case <-time.After(guard):
		t.Fatal("hanging hook was not stopped by cancellation")
	}
}

func TestFmtDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{60 * time.Second, "60s"},
		{60*time.Second + 4*time.Millisecond, "60s"},
		{1500 * time.Millisecond, "1.5s"},
		{250 * time.Millisecond, "250ms"},
		{90 * time.Second, "90s"},
	}
	for _, tt := range tests {
		if got := fmtDuration(tt.d); got != tt.want {
			t.Errorf("fmtDuration(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestLineSinkSplitsAndFlushes(t *testing.T) {
	var buf bytes.Buffer
	s := newLineSink(&buf)
	ls := s.stream(nil, "> ")
	for _, chunk := range []string{"ab", "c\nde", "f\n\n", "tail"} {
		ls.feed([]byte(chunk))
	}
	s.detach()
	ls.feed([]byte("after detach\n"))
	if got, want := buf.String(), "> abc\n> def\n> \n> tail\n"; got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}

func TestRunStrictness(t *testing.T) {
	dir := hookDir(t)
	installHook(t, dir, "start_network", "ok.sh", 0o777)
	tests := []struct {
		strict Strictness
		ok     bool
	}{
		{StrictOff, true},
		{StrictOn, false},
		{StrictAuto, os.Geteuid() != 0},
	}
	for _, tt := range tests {
		res := run(t, context.Background(), Request{Env: Env{State: "start_network", ConfigDir: dir}, Strict: tt.strict})
		if res.OK() != tt.ok {
			t.Errorf("Strict=%d: %s, want ok=%v", tt.strict, res.Reason(), tt.ok)
		}
		if !tt.ok && !errors.Is(res.Err, ErrInsecure) {
			t.Errorf("Strict=%d: Err = %v, want ErrInsecure", tt.strict, res.Err)
		}
	}
}

func TestRunSeparateScriptPath(t *testing.T) {
	// Hooks live elsewhere; they still run in the config dir.
	config, scripts := hookDir(t), hookDir(t)
	installHook(t, scripts, "stop_network", "env.sh", 0o755)
	res := run(t, context.Background(), Request{
		Env:        Env{State: "stop_network", ConfigDir: config},
		ScriptPath: scripts,
	})
	if !res.OK() || res.Path != filepath.Join(scripts, "stop_network") {
		t.Fatalf("result = %+v", res)
	}
	if b, err := os.ReadFile(filepath.Join(config, "cwd.out")); err != nil || strings.TrimSpace(string(b)) != config {
		t.Errorf("cwd.out = %q, %v; want %s", b, err, config)
	}
}

func TestRunBadRequest(t *testing.T) {
	dir := hookDir(t)
	for _, req := range []Request{
		{Env: Env{Name: "", State: "start_network", ConfigDir: dir}},
		{Env: Env{Name: "vm", State: "../x", ConfigDir: dir}},
		{Env: Env{Name: "vm", State: "start_network"}},
	} {
		res := Run(context.Background(), req)
		if res.OK() || !errors.Is(res.Err, ErrInvalid) || res.Reason() == "" {
			t.Errorf("Run(%+v) = %+v, want ErrInvalid", req, res)
		}
	}
}

// TestRunTimeoutKillsLeftovers: when a hook is stopped, members of its
// process group that survive SIGTERM get SIGKILL after the grace period,
// even though the hook itself died of SIGTERM.
func TestRunTimeoutKillsLeftovers(t *testing.T) {
	dir := hookDir(t)
	installHook(t, dir, "start_network", "termchild.sh", 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := &lineLog{onLine: func(line string) {
		if strings.HasSuffix(line, "] started") {
			cancel()
		}
	}}
	res := run(t, ctx, Request{
		Env:     Env{State: "start_network", ConfigDir: dir},
		Timeout: 10 * time.Minute,
		Grace:   300 * time.Millisecond,
		Output:  log,
	})
	pgid := readPid(t, filepath.Join(dir, "pgid"))
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	if !res.Canceled || res.Signal != "SIGTERM" || res.Stopped != "SIGKILL" {
		t.Fatalf("result = %+v; want canceled, the hook dead of SIGTERM, its group sent SIGKILL", res)
	}
	// The child is killed; its parent is gone, so init reaps it.
	deadline := time.Now().Add(guard)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the child that ignored SIGTERM is still alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRunTextFileBusy: a hook that is briefly open for writing (being
// saved) makes exec fail with ETXTBSY; Run tries again. The hook is a
// program (a script is read by its interpreter, not executed, so writing
// it does not make it busy); the writer lets go when the first retry is
// due, so the test does not race the retries.
func TestRunTextFileBusy(t *testing.T) {
	dir := hookDir(t)
	prog, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skipf("no /bin/true to run as a hook: %v", err)
	}
	path := filepath.Join(dir, "start_storage")
	if err := os.WriteFile(path, prog, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	retries := 0
	wait := textBusyWait
	textBusyWait = func(attempt int) {
		retries++
		f.Close() // the editor has saved the hook
	}
	defer func() { textBusyWait = wait }()
	res := Run(context.Background(), Request{Env: Env{Name: "vm", State: "start_storage", ConfigDir: dir}})
	if !res.OK() {
		t.Fatalf("Run: %s", res.Reason())
	}
	if retries != 1 {
		t.Errorf("Run tried again %d times, want once (the hook was busy, then free)", retries)
	}
}

func TestStatusFileOutlivesTheCaller(t *testing.T) {
	dir := t.TempDir()
	status := filepath.Join(dir, "status")
	if err := os.WriteFile(filepath.Join(dir, "start_storage"), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var started int
	res := Run(context.Background(), Request{
		Env:        Env{Name: "vm0", State: "start_storage", ConfigDir: dir},
		StatusFile: status,
		Started:    func(pid int) { started = pid },
		Strict:     StrictOff,
	})
	if res.ExitCode != 3 || res.OK() || started == 0 {
		t.Fatalf("result %+v, started pid %d", res, started)
	}
	if code, ok := ReadStatus(status); !ok || code != 3 {
		t.Fatalf("status file: %d %v", code, ok)
	}
	// A hook killed by a signal is reported as such through the wrapper.
	if err := os.WriteFile(filepath.Join(dir, "stop_storage"), []byte("#!/bin/sh\nkill -KILL $$\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	res = Run(context.Background(), Request{
		Env:        Env{Name: "vm0", State: "stop_storage", ConfigDir: dir},
		StatusFile: filepath.Join(dir, "status2"),
		Strict:     StrictOff,
	})
	if res.Signal != "SIGKILL" || res.Reason() != "hook stop_storage was killed by signal SIGKILL" {
		t.Fatalf("result %+v: %s", res, res.Reason())
	}
	if _, ok := ReadStatus(filepath.Join(dir, "missing")); ok {
		t.Fatal("a missing status file read as a status")
	}
}

// The network variables are set as given, and win over a config key that
// maps to the same name.
func TestEnvNetwork(t *testing.T) {
	env := Env{Name: "web", State: "start_network",
		Config:  map[string]string{"x": "1"},
		Network: map[string]string{"VMSTATED_TAPS": "vm1n0 vm1n1", "VMSTATED_CFG_X": "net"}}.Environ()
	for _, want := range []string{"VMSTATED_TAPS=vm1n0 vm1n1", "VMSTATED_CFG_X=net"} {
		if !slices.Contains(env, want) {
			t.Errorf("environment lacks %s: %q", want, env)
		}
	}
}
