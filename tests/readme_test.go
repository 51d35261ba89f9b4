//go:build linux

package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/internal/testguest"
)

// readmeBlocks returns the code blocks of the README section title.
func readmeBlocks(t *testing.T, title string) []string {
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
	var blocks []string
	for {
		start := strings.Index(text, "\n```\n")
		if start < 0 {
			return blocks
		}
		text = text[start+5:]
		end := strings.Index(text, "\n```")
		if end < 0 {
			t.Fatalf("section %q: a code block does not end", title)
		}
		blocks = append(blocks, text[:end])
		text = text[end+4:]
	}
}

// readmeBlockWith returns the first code block of section title that
// holds the text with.
func readmeBlockWith(t *testing.T, title, with string) string {
	t.Helper()
	for _, b := range readmeBlocks(t, title) {
		if strings.Contains(b, with) {
			return b
		}
	}
	t.Fatalf("README.md, section %q: no code block with %q", title, with)
	return ""
}

// reTermControl is what a terminal takes as control rather than text:
// escape sequences (the guest's shell asks for the cursor position),
// carriage returns and the other C0 characters.
var reTermControl = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b[^\[]|[\x00-\x08\x0b-\x1f\x7f]`)

// TestReadmeConsoleSession runs the README's console transcript: the VM
// lab of its config block, booted from the test guest's kernel (under
// TCG, which this host needs), then "vmstatedctl console -n 0 lab" on a
// terminal, the line the README types, and Ctrl-]. The terminal must show
// the README's lines, in order, one for one.
func TestReadmeConsoleSession(t *testing.T) {
	guestVM(t) // the skips: no QEMU, -short
	const title = "A guest's console"
	config := readmeBlockWith(t, title, "lab {")
	session := strings.Split(readmeBlockWith(t, title, "$ vmstatedctl console"), "\n")

	// The config's body, with the test guest's kernel and initrd.
	kernel, initrd := testguest.Build(t)
	open, end := strings.Index(config, "{"), strings.LastIndex(config, "}")
	body := config[open+1 : end]
	for _, r := range [][2]string{
		{"kernel = vmlinuz;", fmt.Sprintf("kernel = %q;", kernel)},
		{"initrd = initrd.gz;", fmt.Sprintf("initrd = %q;", initrd)},
		{"qemu {", "qemu { accel = tcg;"},
	} {
		if !strings.Contains(body, r[0]) {
			t.Fatalf("the README's lab config no longer has %q; this test puts the test guest there:\n%s", r[0], config)
		}
		body = strings.Replace(body, r[0], r[1], 1)
	}

	// The transcript: the command, the greeting, the typed line, what the
	// guest answers, the end of the detach.
	cmd, ok := strings.CutPrefix(session[0], "$ vmstatedctl ")
	if !ok || len(session) < 4 || session[len(session)-1] != "[detached]" {
		t.Fatalf("the README's console transcript is not a vmstatedctl console session ending in [detached]:\n%s", strings.Join(session, "\n"))
	}
	args := strings.Fields(cmd)
	if args[len(args)-1] != "lab" {
		t.Fatalf("the README's console transcript attaches to %q, its config is lab", args[len(args)-1])
	}
	typed := session[2]

	e := newEnv(t)
	vm := e.addVM("lab", body)
	e.start()
	if _, errs, code := e.ctl("start", "-w", vm); code != 0 {
		t.Fatalf("start -w: %d %s", code, errs)
	}
	// -n 0 replays nothing: attach once the shell's banner and prompt
	// are out (QEMU's copy of the console has them), as a user does who
	// attaches to a guest that has booted.
	prompt := session[len(session)-2]
	consoleLog := filepath.Join(e.runDir, vm, "console.log")
	waitUntil(t, "the guest's shell prompt in "+consoleLog, func() bool {
		b, _ := os.ReadFile(consoleLog)
		text := strings.TrimSpace(reTermControl.ReplaceAllString(string(b), ""))
		return strings.Contains(text, testguest.ReadyLine) && strings.HasSuffix(text, prompt)
	})

	args[len(args)-1] = vm
	p := e.ptyCtl(args...)
	p.wait("Connected", guard)
	// Type once vmstatedctl has the terminal in raw mode: before that,
	// the terminal itself echoes what is typed.
	waitUntil(t, "vmstatedctl's terminal in raw mode", func() bool {
		tio, err := unix.IoctlGetTermios(int(p.slave.Fd()), unix.TCGETS)
		return err == nil && tio.Lflag&unix.ECHO == 0
	})
	p.typeIn(typed + "\r")
	p.wait(session[3], guard)
	// The shell's prompt after the answer, then detach.
	p.wait(prompt, guard)
	p.typeIn("\x1d") // Ctrl-]
	if code := p.exit(); code != 0 {
		t.Errorf("detach exited %d; it showed:\n%s", code, p.out.String())
	}
	p.wait("[detached]", guard)

	var got []string
	for _, l := range strings.Split(reTermControl.ReplaceAllString(p.out.String(), ""), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			got = append(got, l)
		}
	}
	var want []string
	for _, l := range session[1:] {
		want = append(want, strings.TrimSpace(strings.ReplaceAll(l, "console of lab;", "console of "+vm+";")))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the terminal showed:\n%s\nthe README shows:\n%s\n(as bytes: %q)", strings.Join(got, "\n"), strings.Join(want, "\n"), got)
	}
}

// What changes from run to run in the README's VNC lines: the port the
// daemon picked, the password it made up (base32, 8 characters).
var (
	reVNCPort     = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	reVNCPassword = regexp.MustCompile(`^password: [A-Z2-7]{8}$`)
)

// TestReadmeAgentVNCSession runs the README's guest agent and VNC
// transcript against its web config, booted from the agent test guest
// (real qemu-ga; its init configures the address the README shows). Each
// command runs through sh as written, with the test's vmstatedctl first
// in PATH; the output must match the README's line for line, but for the
// port and the password, which change from run to run.
func TestReadmeAgentVNCSession(t *testing.T) {
	guestVM(t) // the skips: no QEMU, -short
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("jq is not installed (apt-get install jq); the README's transcript uses it")
	}
	const title = "Guest agent and VNC"
	config := readmeBlockWith(t, title, "web {")
	session := strings.Split(readmeBlockWith(t, title, "$ vmstatedctl vnc web"), "\n")

	kernel, initrd := testguest.Agent(t)
	open, end := strings.Index(config, "{"), strings.LastIndex(config, "}")
	body := config[open+1 : end]
	if !strings.Contains(body, "qemu {") {
		t.Fatalf("the README's web config has no qemu section; this test boots the test guest there:\n%s", config)
	}
	body = strings.Replace(body, "qemu {", fmt.Sprintf("qemu { accel = tcg; kernel = %q; initrd = %q; append = \"console=ttyS0 quiet\";", kernel, initrd), 1)

	e := newEnv(t)
	vm := e.addVM("web", body)
	d := e.start()
	d.do(vm, api.ActionStart)
	d.waitUp(vm)
	d.waitStatus(vm, "showing the guest's address", func(st api.Status) bool {
		return slices.Contains(st.IPAddresses, testguest.AgentAddress)
	})

	steps := transcriptSteps(t, session)
	environ := append(append([]string(nil), e.environ...), "VMSTATED_SOCKET="+e.socket)
	for i, v := range environ {
		if p, ok := strings.CutPrefix(v, "PATH="); ok {
			environ[i] = "PATH=" + filepath.Dir(ctlBin) + ":" + p
		}
	}
	ports := map[string]bool{}
	for _, st := range steps {
		cmd := strings.ReplaceAll(st.cmd, " web", " "+vm)
		sh := exec.Command("sh", "-c", cmd)
		sh.Env = environ
		out, err := sh.CombinedOutput()
		if err != nil {
			t.Fatalf("$ %s: %v\n%s", cmd, err, out)
		}
		got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		if len(got) != len(st.want) {
			t.Fatalf("$ %s: %d lines, the README shows %d:\n%s", st.cmd, len(got), len(st.want), out)
		}
		for j := range got {
			for _, p := range reVNCPort.FindAllString(got[j], -1) {
				ports[p] = true
			}
			g, w := reVNCPort.ReplaceAllString(got[j], "PORT"), reVNCPort.ReplaceAllString(st.want[j], "PORT")
			if reVNCPassword.MatchString(g) && reVNCPassword.MatchString(w) {
				continue
			}
			if g != w {
				t.Errorf("$ %s, line %d:\n got %q\nshows %q", st.cmd, j+1, got[j], st.want[j])
			}
		}
	}
	if len(ports) != 1 {
		t.Errorf("the transcript shows VNC addresses %v; want one, the same in status and vnc", ports)
	}
}

// What differs between runs of a README transcript, as the examples'
// session test takes it: durations, pids and other numbers of two digits
// or more, column widths.
var (
	reShapeDur   = regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|us|ms|s|m|h)\b`)
	reShapeNum   = regexp.MustCompile(`\b\d{2,}\b`)
	reShapeSpace = regexp.MustCompile(`\s+`)
)

func shapeOf(line string) string {
	line = reShapeDur.ReplaceAllString(line, "DUR")
	line = reShapeNum.ReplaceAllString(line, "N")
	return strings.TrimSpace(reShapeSpace.ReplaceAllString(line, " "))
}

// TestReadmeRemoteSession runs the README's -H transcript: hv1 and hv2
// are two daemons of the test's own behind a real sshd, reached through an
// ssh config that names them; ops is a real user of the test's own, who
// owns web on hv1 and db on hv2 (db runs already), diskless QEMU guests. The commands run
// through sh as written but for the test's names (user, VMs, the sshd's
// port for 2222, the sockets), put back in the output before it is
// compared with the README's, in shape.
func TestReadmeRemoteSession(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	session := strings.Split(readmeBlockWith(t, "Other hosts, and monitoring", "$ vmstatedctl -H ssh://ops@hv1"), "\n")
	r1 := newRemoteEnv(t)
	e2 := newEnv(t)
	e2.public()
	u := addUser(t)
	r1.ssh.authorize(u.Username)
	f, err := os.OpenFile(r1.ssh.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "Host hv1 hv2\n  HostName 127.0.0.1\n  Port %d\n", r1.ssh.port)
	f.Close()

	// Diskless QEMU guests (TCG, which this host needs): the README's
	// hosts run QEMU.
	vmBody := func(cpus int, memory string) string {
		return fmt.Sprintf("    hypervisor = qemu;\n    cpus = %d;\n    memory = %s;\n    owner = %s;\n    qemu { accel = tcg; }\n", cpus, memory, u.Username)
	}
	web := r1.addVM("web", vmBody(2, "2GB"))
	db := e2.addVM("db", vmBody(4, "8GB"))
	r1.d = r1.start()
	d2 := e2.start()
	d2.do(db, api.ActionStart)
	d2.waitUp(db)

	hv1 := fmt.Sprintf("ssh://%s@hv1%s", u.Username, r1.socket)
	hv2 := fmt.Sprintf("ssh://%s@hv2:%d%s", u.Username, r1.ssh.port, e2.socket)
	toTest := strings.NewReplacer("ssh://ops@hv1", hv1, "ssh://ops@hv2:2222", hv2, " web", " "+web, " db", " "+db)
	toREADME := strings.NewReplacer(hv1, "ssh://ops@hv1", hv2, "ssh://ops@hv2:2222", web, "web", db, "db", u.Username, "ops")

	environ := append(append([]string(nil), r1.environ...),
		"VMSTATED_SSH_COMMAND=ssh -F "+r1.ssh.config,
		"VMSTATED_REMOTE_VMSTATEDCTL="+r1.ctlPub)
	for i, v := range environ {
		if p, ok := strings.CutPrefix(v, "PATH="); ok {
			environ[i] = "PATH=" + filepath.Dir(ctlBin) + ":" + p
		}
	}
	steps := transcriptSteps(t, session)
	for _, st := range steps {
		sh := exec.Command("sh", "-c", toTest.Replace(st.cmd))
		sh.Env = environ
		out, err := sh.CombinedOutput()
		if err != nil {
			t.Fatalf("$ %s: %v\n%s", st.cmd, err, out)
		}
		var got []string
		if s := strings.TrimSuffix(string(out), "\n"); s != "" {
			got = strings.Split(toREADME.Replace(s), "\n")
		}
		if len(got) != len(st.want) {
			t.Fatalf("$ %s: %d lines, the README shows %d:\n%s", st.cmd, len(got), len(st.want), strings.Join(got, "\n"))
		}
		for j := range got {
			if g, w := shapeOf(got[j]), shapeOf(st.want[j]); g != w {
				t.Errorf("$ %s, line %d:\n got %q\nshows %q\n(in shape: %q, %q)", st.cmd, j+1, got[j], st.want[j], g, w)
			}
		}
	}
}

// step is one command of a README transcript and the lines it prints.
type step struct {
	cmd  string
	want []string
}

// transcriptSteps splits a transcript into its "$ " commands, each with
// the output lines under it.
func transcriptSteps(t *testing.T, session []string) []step {
	t.Helper()
	var steps []step
	for _, l := range session {
		if c, ok := strings.CutPrefix(l, "$ "); ok {
			steps = append(steps, step{cmd: c})
		} else if len(steps) > 0 {
			steps[len(steps)-1].want = append(steps[len(steps)-1].want, l)
		} else {
			t.Fatalf("the README's transcript has output %q before any command", l)
		}
	}
	return steps
}
