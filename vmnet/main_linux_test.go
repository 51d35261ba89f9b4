package vmnet

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// inNetns is set in the copy of the test binary that runs inside a
// network namespace of its own.
const inNetns = "VMNET_TEST_NETNS"

// TestMain runs the tests, as root, inside a fresh network namespace, so
// that the taps, bridges, addresses and nftables tables they make never
// touch the host's; the namespace goes, with all of it, afterwards.
// Without root they run here, and those that need root skip.
func TestMain(m *testing.M) {
	if os.Geteuid() != 0 || os.Getenv(inNetns) != "" {
		os.Exit(m.Run())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		os.Exit(m.Run())
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	ns := "vmnet-test-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		// A container may not allow it: the tests that need it skip.
		fmt.Fprintf(os.Stderr, "ip netns add %s: %v: %s; running without a namespace of their own\n", ns, err, out)
		os.Exit(m.Run())
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), inNetns+"="+ns)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err = cmd.Run()
	if out, derr := exec.Command("ip", "netns", "del", ns).CombinedOutput(); derr != nil {
		fmt.Fprintf(os.Stderr, "ip netns del %s: %v: %s\n", ns, derr, out)
	}
	if err != nil {
		if x, ok := err.(*exec.ExitError); ok {
			os.Exit(x.ExitCode())
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
