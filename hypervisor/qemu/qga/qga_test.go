package qga_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor/qemu/qga"
	"github.com/vmstated/vmstated/internal/testguest"
)

// bootAgentGuest runs QEMU with the agent guest and returns the agent's
// socket once the guest says the agent holds its port, QEMU's process,
// and a channel closed once it has exited.
func bootAgentGuest(t testing.TB) (string, *exec.Cmd, <-chan struct{}) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	if testing.Short() {
		t.Skip("boots a Linux guest; skipped with -short")
	}
	kernel, initrd := testguest.Agent(t)
	dir, err := os.MkdirTemp("", "qga")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "qga.sock")
	cmd := exec.Command("qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", "128", "-nodefaults",
		"-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 quiet",
		"-serial", "stdio",
		"-chardev", "socket,id=qga0,path="+sock+",server=on,wait=off",
		"-device", "virtio-serial-pci,id=vs0",
		"-device", "virtserialport,bus=vs0.0,chardev=qga0,name=org.qemu.guest_agent.0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	ready := make(chan struct{})
	var console []string
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			console = append(console, sc.Text())
			if strings.Contains(sc.Text(), testguest.ReadyLine) {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("QEMU exited before the guest was ready: %s", strings.Join(console, "\n"))
	case <-time.After(3 * time.Minute):
		t.Fatal("the agent guest did not get ready in 3 minutes")
	}
	return sock, cmd, exited
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// One boot of the agent guest serves every exchange with the real agent,
// the shutdown last.
func TestRealAgent(t *testing.T) {
	sock, cmd, exited := bootAgentGuest(t)

	dial := func(t *testing.T) *qga.Client {
		t.Helper()
		c, err := qga.Dial(ctxFor(t, 30*time.Second), sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("ping and info", func(t *testing.T) {
		c := dial(t)
		ctx := ctxFor(t, 10*time.Second)
		if err := c.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Version == "" || !info.Supports("guest-network-get-interfaces") || !info.Supports("guest-shutdown") {
			t.Errorf("guest-info: version %q, %d commands", info.Version, len(info.Commands))
		}
		if info.Supports("no-such-command") {
			t.Error("Supports says yes to a command the agent lacks")
		}
	})

	t.Run("interfaces, host name and OS", func(t *testing.T) {
		c := dial(t)
		ctx := ctxFor(t, 10*time.Second)
		ifs, err := c.Interfaces(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := testguest.AgentAddress + "/24"
		found := false
		for _, f := range ifs {
			for _, a := range f.Addresses {
				if f.Name == "dummy0" && a == want {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("no %s on dummy0 in %+v", want, ifs)
		}
		if h, err := c.Hostname(ctx); err != nil || h != testguest.AgentHostname {
			t.Errorf("host name %q, %v; want %q", h, err, testguest.AgentHostname)
		}
		o, err := c.OSInfo(ctx)
		if err != nil || o.PrettyName != testguest.AgentOSName || o.KernelRelease == "" {
			t.Errorf("OS %+v, %v; want %q and a kernel release", o, err, testguest.AgentOSName)
		}
	})

	t.Run("an unknown command is the agent's error", func(t *testing.T) {
		c := dial(t)
		err := c.Run(ctxFor(t, 10*time.Second), "guest-no-such-thing", nil, nil)
		var qe *qga.Error
		if !errors.As(err, &qe) || qe.Class == "" {
			t.Fatalf("got %v, want a *qga.Error", err)
		}
		// The stream stays in step after an error reply.
		if err := c.Ping(ctxFor(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("resync after a client left half a request and an unread reply", func(t *testing.T) {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		// A reply nobody reads, then half a request.
		conn.Write([]byte(`{"execute":"guest-info"}` + "\n" + `{"execute":"guest-pi`))
		conn.Close()
		c := dial(t)
		if _, err := c.Hostname(ctxFor(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("shutdown powers the guest off", func(t *testing.T) {
		c := dial(t)
		if err := c.Shutdown(ctxFor(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := c.Ping(ctxFor(t, time.Second)); !errors.Is(err, qga.ErrBroken) {
			t.Errorf("a command after shutdown: %v, want ErrBroken", err)
		}
		select {
		case <-exited:
			if !cmd.ProcessState.Success() {
				t.Errorf("QEMU: %v", cmd.ProcessState)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the guest did not power off within 60 s of guest-shutdown")
		}
	})
}

// One poll as the daemon does it: connect, resynchronise, list the
// interfaces, close.
func BenchmarkRealAgentPoll(b *testing.B) {
	sock, _, _ := bootAgentGuest(b)
	b.ResetTimer()
	for b.Loop() {
		c, err := qga.Dial(ctxFor(b, 30*time.Second), sock)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Interfaces(ctxFor(b, 10*time.Second)); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
