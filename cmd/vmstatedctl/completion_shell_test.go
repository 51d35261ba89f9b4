package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// buildCtl builds vmstatedctl into a directory of its own, for PATH.
func buildCtl(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "vmstatedctl"), ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// The bash script, loaded into a real bash, fills COMPREPLY from the
// words bash hands its function.
func TestBashCompletionScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	bin := buildCtl(t)
	d := startDaemon(t, map[string]string{"db": sleeper("db", ""), "web": sleeper("web", "")})
	cases := []struct {
		words string // the words as bash splits them; the last is completed
		want  string
	}{
		{`vmstatedctl st`, "start status stop"},
		{`vmstatedctl stop -`, "-a -f -o -s -t -w"},
		{`vmstatedctl events -af`, "-after"},
		{`vmstatedctl start ''`, "db web"},
		{`vmstatedctl stop -t 5 w`, "web"},
		{`vmstatedctl -o ''`, "table json"},
		{`vmstatedctl wait web ru`, "running"},
		{`vmstatedctl check -c ''`, ""}, // a directory: bash's own file names
	}
	for _, tc := range cases {
		script := `source <(vmstatedctl completion bash) || exit 9
complete -p vmstatedctl | grep -q _vmstatedctl || exit 8
COMP_WORDS=(` + tc.words + `)
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_vmstatedctl
printf '%s\n' "${COMPREPLY[@]}"
`
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "VMSTATED_SOCKET="+d.socket)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.words, err, out)
		}
		got := strings.Fields(string(out))
		sort.Strings(got)
		want := strings.Fields(tc.want)
		sort.Strings(want)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("bash completes %s to %q, want %q", tc.words, got, want)
		}
	}
}

// The zsh script in a real interactive zsh on a terminal, with the
// completion system loaded: type a partial line, press Tab, and see what
// the line became.
func TestZshCompletionScript(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Skip("zsh is not installed (Debian: apt-get install zsh)")
	}
	bin := buildCtl(t)
	d := startDaemon(t, map[string]string{"db": sleeper("db", ""), "web": sleeper("web", "")})
	home := t.TempDir()
	cmd := exec.Command(zsh, "-f", "-i")
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "VMSTATED_SOCKET="+d.socket,
		"HOME="+home, "ZDOTDIR="+home, "TERM=xterm")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tty.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	var (
		mu  sync.Mutex
		buf bytes.Buffer
	)
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := tty.Read(b)
			mu.Lock()
			buf.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	// expect waits until the terminal shows re (a guard against a hang,
	// not a timing assertion).
	expect := func(what string, re *regexp.Regexp) {
		t.Helper()
		deadline := time.Now().Add(guard)
		for {
			mu.Lock()
			ok := re.Match(buf.Bytes())
			out := buf.String()
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the terminal never showed %s:\n%q", what, re, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(tty, s); err != nil {
			t.Fatal(err)
		}
	}
	send("PS1='READY%% '; autoload -Uz compinit && compinit -u -D && source <(vmstatedctl completion zsh) && print LOADED-$+_comps[vmstatedctl]\r")
	expect("loading", regexp.MustCompile(`(?m)^LOADED-1\r?$`))
	cases := []struct{ typed, want string }{
		{"vmstatedctl events -af", "vmstatedctl events -after"},
		{"vmstatedctl fail", "vmstatedctl failreset"},
		{"vmstatedctl start w", "vmstatedctl start web"},
		{"vmstatedctl stop -f -t 3 d", "vmstatedctl stop -f -t 3 db"},
		{"vmstatedctl -o j", "vmstatedctl -o json"},
		{"vmstatedctl wait db fa", "vmstatedctl wait db failed"},
	}
	for i, tc := range cases {
		// Tab completes the line; Ctrl-A and a print command in front
		// make zsh print the line as it became.
		mark := "LINE" + string(rune('A'+i)) + ":"
		send(tc.typed + "\t")
		send("\x01print -r -- " + mark + "\r")
		expect(tc.typed, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(mark+tc.want)+`\r?$`))
	}
	send("exit\r")
}
