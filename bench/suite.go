// Package bench is vmstated's benchmark suite: it builds the real daemon,
// drives it from outside through its control socket as a user would, and
// reports every figure next to a reference measured in the same run (a
// plain shell script, a bare parent process, an empty daemon), because the
// machines it runs on are shared and noisy. Targets that are missed are
// reported, never failed.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options size the run.
type Options struct {
	// Repo is the module root holding cmd/vmstated.
	Repo string
	// Rounds is how many times each latency scenario is repeated.
	Rounds int
	// LifecycleVMs is the VM count of scenario 1.
	LifecycleVMs int
	// ScaleVMs is the VM count of scenario 2; ScaleRounds its repetitions.
	ScaleVMs, ScaleRounds int
	// Idle is how long scenario 2 watches the daemon's idle CPU.
	Idle time.Duration
	// Crashes is the sample count of scenario 3.
	Crashes int
	// Reloads is the sample count of scenario 4.
	Reloads int
	// QEMUVMs is the VM count of scenario 5 (0 skips it).
	QEMUVMs int
	// Libvirt runs scenario 5's comparison with libvirt when libvirtd
	// answers (it defines and undefines domains there).
	Libvirt bool
	// Only, when not empty, names the scenarios to run (lifecycle, scale,
	// crash, qemu, suspend); the others are reported as skipped.
	Only []string
	// Log receives progress lines.
	Log io.Writer
}

// Short are small sizes that exercise every scenario quickly.
func Short(repo string) Options {
	return Options{Repo: repo, Rounds: 1, LifecycleVMs: 3, ScaleVMs: 10, ScaleRounds: 2,
		Idle: time.Second, Crashes: 3, Reloads: 3, QEMUVMs: 1}
}

// Full are the sizes of `make bench`.
func Full(repo string) Options {
	return Options{Repo: repo, Rounds: 5, LifecycleVMs: 50, ScaleVMs: 1000, ScaleRounds: 3,
		Idle: 30 * time.Second, Crashes: 50, Reloads: 20, QEMUVMs: 10, Libvirt: true}
}

// Suite is one run.
type Suite struct {
	opt Options
	tmp string
	// runTmp holds the daemons' run directories: in memory where it can
	// be, as on a host; s.tmp otherwise.
	runTmp string
	bins   string
	log    io.Writer

	mu      sync.Mutex
	daemons []*daemon
	others  []*exec.Cmd
	domains []string // libvirt domains defined

	// Report is filled as scenarios finish.
	Report Report
}

// Run builds the binaries, runs every scenario and returns the report. It
// returns an error only when the suite could not run; whatever happens,
// every process it started is gone when it returns.
func Run(ctx context.Context, opt Options) (rep *Report, err error) {
	s := &Suite{opt: opt, log: opt.Log}
	if s.log == nil {
		s.log = io.Discard
	}
	if err := becomeSubreaper(); err != nil {
		s.logf("warning: cannot become a child subreaper (%v); orphans of a dead daemon may be missed", err)
	}
	raiseNofile(s)
	s.tmp, err = os.MkdirTemp("", "vmb-")
	if err != nil {
		return nil, err
	}
	defer func() {
		s.cleanup()
		_ = os.RemoveAll(s.tmp)
	}()
	// The daemon's run directory lives in memory on the hosts it runs on
	// (/run/vmstated, $XDG_RUNTIME_DIR/vmstated); the suite's does too
	// where a memory file system is at hand. State records stay on disk.
	s.runTmp, err = memDir("vmb-run-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(s.runTmp) }()
	s.bins = filepath.Join(s.tmp, "bin")
	if err := s.build(ctx); err != nil {
		return nil, err
	}
	s.Report.Started = time.Now().UTC()
	s.Report.Env = describeEnv(ctx, opt.Repo)
	s.Report.Opt = opt
	scenarios := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"lifecycle", s.lifecycle},
		{"scale", s.scale},
		{"crash", s.crash},
		{"qemu", s.qemu},
		{"suspend", s.suspend},
	}
	for _, sc := range scenarios {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if len(opt.Only) > 0 && !slices.Contains(opt.Only, sc.name) {
			s.Report.Skipped = append(s.Report.Skipped, "scenario "+sc.name+": not selected (-only)")
			continue
		}
		s.logf("== %s", sc.name)
		t0 := time.Now()
		if err := sc.fn(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("scenario %s: %w", sc.name, err)
		}
		s.logf("   %s done in %v", sc.name, time.Since(t0).Round(time.Millisecond))
		s.cleanup()
	}
	s.Report.Took = time.Since(s.Report.Started)
	return &s.Report, nil
}

func (s *Suite) logf(format string, a ...any) {
	fmt.Fprintf(s.log, format+"\n", a...)
}

// bin is the path of a binary the suite built.
func (s *Suite) bin(name string) string { return filepath.Join(s.bins, name) }

// build compiles the daemon, the client and the suite's own helper.
func (s *Suite) build(ctx context.Context) error {
	for _, pkg := range []string{"vmstated", "vmstatedctl"} {
		if err := s.goBuild(ctx, s.bin(pkg), "./cmd/"+pkg); err != nil {
			return err
		}
	}
	return s.goBuild(ctx, s.bin("vmbench"), "./bench/cmd/vmbench")
}

func (s *Suite) goBuild(ctx context.Context, out, pkg string) error {
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", out, pkg)
	cmd.Dir = s.opt.Repo
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// track remembers a daemon for cleanup.
func (s *Suite) track(d *daemon) {
	s.mu.Lock()
	s.daemons = append(s.daemons, d)
	s.mu.Unlock()
}

// trackCmd remembers another long-lived process for cleanup.
func (s *Suite) trackCmd(c *exec.Cmd) {
	s.mu.Lock()
	s.others = append(s.others, c)
	s.mu.Unlock()
}

// cleanup ends every daemon (stopping its VMs first), every other process
// the suite started, and finally anything left below us.
func (s *Suite) cleanup() {
	s.mu.Lock()
	ds, os_, doms := s.daemons, s.others, s.domains
	s.daemons, s.others, s.domains = nil, nil, nil
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, d := range ds {
		d.close(ctx)
	}
	undefineDomains(doms)
	for _, c := range os_ {
		if c.Process != nil && c.ProcessState == nil {
			_ = c.Process.Kill()
		}
	}
	if n := killDescendants(nil, 30*time.Second); n > 0 {
		s.logf("   cleanup: killed %d leftover processes", n)
	}
}

// raiseNofile lifts the soft open-file limit to the hard one: a thousand
// VMs need a few thousand descriptors in the daemon, which inherits it.
func raiseNofile(s *Suite) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			s.logf("warning: cannot raise the open-file limit: %v", err)
		}
	}
}

// ErrNoRepo: the module root was not found.
var ErrNoRepo = errors.New("cannot find the vmstated module root (go.mod with cmd/vmstated); run from inside the repository")

// FindRepo walks up from dir to the module root.
func FindRepo(dir string) (string, error) {
	for {
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "cmd", "vmstated")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNoRepo
		}
		dir = parent
	}
}

// writeFile writes a file, creating its directory.
func writeFile(path, content string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), mode)
}

// vmConfig is the config file of an exec VM running command.
func vmConfig(name string, command []string, extra string) string {
	q := make([]string, len(command))
	for i, c := range command {
		q[i] = fmt.Sprintf("%q", c)
	}
	return fmt.Sprintf("%s {\n  hypervisor = exec;\n%s  exec { command = [ %s ]; }\n}\n", name, extra, strings.Join(q, ", "))
}

const noopHook = "#!/bin/sh\nexit 0\n"

// lifecycleHooks are the four hooks of scenario 1.
var lifecycleHooks = []string{"start_network", "start_storage", "stop_storage", "stop_network"}
