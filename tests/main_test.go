//go:build linux

package tests

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// raceBuild is true when the tests run under -race; the binaries under test
// are then built with the race detector too.
var raceBuild bool

var (
	// bin holds the vmstated and vmstatedctl binaries built for this run.
	vmstatedBin, ctlBin string
	// base is a short temporary directory: unix socket paths must stay
	// under about 100 bytes.
	base string
	// runID makes VM names unique to this run: as root the daemon keeps VM
	// runtime files under the system run directory, shared by every run.
	runID string
)

func TestMain(m *testing.M) {
	if os.Getenv(floodEnv) != "" {
		os.Exit(floodMain())
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	var err error
	base, err = os.MkdirTemp("", "e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(base)
	var b [3]byte
	_, _ = rand.Read(b[:])
	runID = hex.EncodeToString(b[:])

	binDir := filepath.Join(base, "bin")
	vmstatedBin = filepath.Join(binDir, "vmstated")
	ctlBin = filepath.Join(binDir, "vmstatedctl")
	for out, pkg := range map[string]string{vmstatedBin: "../cmd/vmstated", ctlBin: "../cmd/vmstatedctl"} {
		args := []string{"build", "-o", out}
		if raceBuild {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, pkg)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", pkg, err, b)
			return 1
		}
	}
	return m.Run()
}
