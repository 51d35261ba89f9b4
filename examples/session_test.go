package examples

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sessionStep is one "$ command" of a README session and the output shown
// under it.
type sessionStep struct {
	cmd  string
	want []string
}

// readmeSession returns the steps of the first code block under the
// README heading title.
func readmeSession(t *testing.T, title string) []sessionStep {
	t.Helper()
	return readmeBlock(t, title, "")
}

// readmeBlock returns the steps of the first code block under the README
// heading title that holds the text with.
func readmeBlock(t *testing.T, title, with string) []sessionStep {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n## "+title+"\n")
	if i < 0 {
		t.Fatalf("README.md has no section %q", title)
	}
	text = text[i+1:]
	if j := strings.Index(text, "\n## "); j >= 0 {
		text = text[:j+1]
	}
	var block string
	for {
		start := strings.Index(text, "\n```\n")
		if start < 0 {
			t.Fatalf("section %q has no code block with %q", title, with)
		}
		text = text[start+5:]
		end := strings.Index(text, "\n```")
		if end < 0 {
			t.Fatalf("section %q: the code block does not end", title)
		}
		block, text = text[:end], text[end+4:]
		if strings.Contains(block, with) {
			break
		}
	}
	var steps []sessionStep
	for _, line := range strings.Split(block, "\n") {
		if cmd, ok := strings.CutPrefix(line, "$ "); ok {
			steps = append(steps, sessionStep{cmd: cmd})
			continue
		}
		if len(steps) == 0 {
			t.Fatalf("section %q: output %q before any command", title, line)
		}
		steps[len(steps)-1].want = append(steps[len(steps)-1].want, line)
	}
	return steps
}

// What differs from run to run, and the README shows as one run had it.
var (
	reStamp = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
	reDur   = regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|us|ms|s|m|h)\b`)
	reNum   = regexp.MustCompile(`\b\d{2,}\b`) // pids; counts in the session have one digit
	rePath  = regexp.MustCompile(`(^|\s)/\S+`)
	reSpace = regexp.MustCompile(`\s+`)
)

// shape keeps what a line says and drops what changes between runs: time
// stamps, durations, pids, paths and column widths.
func shape(line string) string {
	line = reStamp.ReplaceAllString(line, "TIME")
	line = reDur.ReplaceAllString(line, "DUR")
	line = reNum.ReplaceAllString(line, "N")
	line = rePath.ReplaceAllString(line, "${1}PATH")
	return strings.TrimSpace(reSpace.ReplaceAllString(line, " "))
}

// TestReadmeSession runs the README's "A short session", command by
// command, against the VMs of examples/session and freshly built binaries,
// and compares the output line by line with what the README shows, in
// shape.
func TestReadmeSession(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon; skipped with -short")
	}
	runReadmeSteps(t, readmeSession(t, "A short session"))
}

// TestReadmeMetricsSession runs the README's scrape of /metrics where the
// README places it: in the short session, right after db failed to start.
func TestReadmeMetricsSession(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon; skipped with -short")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (apt-get install curl); the README's scrape uses it")
	}
	short := readmeSession(t, "A short session")
	k := slices.IndexFunc(short, func(s sessionStep) bool { return s.cmd == "vmstatedctl start -w db" })
	if k < 0 {
		t.Fatal("the short session no longer starts db; say in the README where the scrape of /metrics comes from")
	}
	scrape := readmeBlock(t, "Other hosts, and monitoring", "/metrics")
	runReadmeSteps(t, append(short[:k+1:k+1], scrape...))
}

// runReadmeSteps runs the steps of a README session one by one, against
// the VMs of examples/session and freshly built binaries, and compares
// each step's output line by line with what the README shows, in shape.
// /tmp/s in the README becomes a directory of the test's own, and $PWD/bin
// the built binaries.
func runReadmeSteps(t *testing.T, steps []sessionStep) {
	t.Helper()
	top, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, c := range []string{"vmstated", "vmstatedctl"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, c), "../cmd/"+c).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", c, err, out)
		}
	}
	// Short, for the unix sockets under it.
	dir, err := os.MkdirTemp("", "s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctl := exec.Command(filepath.Join(bin, "vmstatedctl"), "-s", filepath.Join(dir, "sock"), "stop", "-a", "-f")
		_ = ctl.Run()
		if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGTERM)
				for deadline := time.Now().Add(time.Minute); syscall.Kill(pid, 0) == nil && time.Now().Before(deadline); {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
		os.RemoveAll(dir)
	})
	subst := strings.NewReplacer("/tmp/s", dir, "$PWD/bin", bin)

	var exports []string
	for _, st := range steps {
		cmdline := subst.Replace(st.cmd)
		script := strings.Join(append(append([]string(nil), exports...), cmdline), "\n")
		if strings.HasPrefix(st.cmd, "export ") {
			exports = append(exports, cmdline)
		}
		sh := exec.Command("sh", "-c", script)
		sh.Dir = top
		sh.Env = append(os.Environ(), "VMSTATED_SOCKET=", "TZ=UTC")
		var out bytes.Buffer
		sh.Stdout, sh.Stderr = &out, &out
		err := sh.Run()
		got := strings.TrimSuffix(out.String(), "\n")
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			got += "\n(exit status " + strconv.Itoa(ee.ExitCode()) + ")"
		default:
			t.Fatalf("$ %s: %v", st.cmd, err)
		}
		var gotLines []string
		if got != "" {
			gotLines = strings.Split(got, "\n")
		}
		if len(gotLines) != len(st.want) {
			t.Fatalf("$ %s: %d lines, the README shows %d:\n%s", st.cmd, len(gotLines), len(st.want), got)
		}
		for i := range gotLines {
			if g, w := shape(gotLines[i]), shape(st.want[i]); g != w {
				t.Errorf("$ %s, line %d:\n got %q\nshows %q\n(in shape: %q, %q)", st.cmd, i+1, gotLines[i], st.want[i], g, w)
			}
		}
	}
}
