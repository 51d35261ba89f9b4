package config

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vmstated/vmstated/trust"
	"github.com/vmstated/vmstated/ucl"
)

// Limits on what one VM's config may hold. A real config is a few
// kilobytes; the caps are far above that and far below what could hurt the
// daemon: the parser's memory grows with the input, and every scalar value
// reaches each hook's environment, which the kernel bounds.
const (
	// MaxFileSize is the largest config or included file read.
	MaxFileSize = 512 << 10
	// MaxVMSize is the most bytes one VM's config and its includes may
	// hold together.
	MaxVMSize = 1 << 20
	// MaxKeys is the most keys (and list items) one VM's config may hold.
	MaxKeys = 10000
	// MaxHookVar is the longest VMSTATED_CFG_ variable a hook can get:
	// Linux refuses a single environment string of 128 KiB or more.
	MaxHookVar = 128<<10 - 1
	// MaxHookEnv bounds all VMSTATED_CFG_ variables together, well inside
	// the kernel's limit for arguments and environment (a quarter of the
	// stack limit, 2 MiB by default).
	MaxHookEnv = 512 << 10
)

// readBudget is what is left of a VM's MaxVMSize while its files are read.
type readBudget struct {
	used int64
}

// read reads a config or included file under the trust rule: a regular
// file, opened without blocking, within the per-file cap and what is left
// of the per-VM cap. The error names the file and the cap.
func (d *decoder) readFile(path string) ([]byte, error) {
	limit := int64(MaxFileSize)
	left := MaxVMSize - d.budget.used
	perVM := left < limit
	if perVM {
		limit = left
	}
	data, err := trust.ReadFile(path, d.strict, limit)
	if errors.Is(err, trust.ErrTooLarge) {
		if perVM {
			return nil, fmt.Errorf("%s: this VM's config files together would exceed %d KiB (the per-VM limit); make them smaller", path, MaxVMSize>>10)
		}
		return nil, fmt.Errorf("%s: larger than %d KiB (the limit for one config file); make it smaller", path, MaxFileSize>>10)
	}
	if err != nil {
		return nil, err
	}
	d.budget.used += int64(len(data))
	return data, nil
}

// countKeys counts the keys and list items under n, stopping past max.
func countKeys(n *ucl.Node, max int) int {
	if n == nil {
		return 0
	}
	c := 0
	for _, f := range n.Fields {
		c++
		if c > max {
			return c
		}
		c += countKeys(f.Value, max-c)
	}
	for _, it := range n.Items {
		c++
		if c > max {
			return c
		}
		c += countKeys(it, max-c)
	}
	return c
}

// checkHookEnv refuses scalar values that would make every hook fail to
// start with "argument list too long".
func (d *decoder) checkHookEnv() {
	total := 0
	for _, k := range sortedKeys(d.vm.scalars) {
		n := len("VMSTATED_CFG_") + len(k) + 1 + len(d.vm.scalars[k])
		if n > MaxHookVar {
			d.errf(d.keyPos(strings.SplitN(k, ".", 2)[0]), k, "value of %d bytes is too long for a hook's environment (VMSTATED_CFG_%s may hold at most %d bytes); shorten it", len(d.vm.scalars[k]), strings.ToUpper(k), MaxHookVar)
			return
		}
		total += n + 1
	}
	if total > MaxHookEnv {
		d.errf(d.bodyPos(), "", "the config's values come to %d KiB in the hooks' environment, more than the limit of %d KiB; shorten or remove values", total>>10, MaxHookEnv>>10)
	}
}

// checkProgram applies the trust rule to a program the daemon will run
// for this VM, when it runs as root. A bare name is looked up in PATH as
// the driver does; one that is not there is left to the launch to report.
func (d *decoder) checkProgram(key string, pos ucl.Pos, prog string) {
	if !d.strict || prog == "" {
		return
	}
	path := prog
	if !strings.Contains(prog, "/") {
		p, err := exec.LookPath(prog)
		if err != nil {
			return
		}
		path = p
	}
	if !filepath.IsAbs(path) {
		d.errf(pos, key, "%s is not an absolute path; a root daemon runs programs only by their full path", prog)
		return
	}
	p, err := trust.OpenProgram(path, true)
	if err != nil {
		if trust.IsNotExist(err) {
			// Not installed yet: the launch says so.
			return
		}
		d.errf(pos, key, "program refused: %v", err)
		return
	}
	p.Close()
}

// checkPrograms applies checkProgram to every program the VM names.
func (d *decoder) checkPrograms() {
	vm := d.vm
	switch {
	case vm.Hypervisor == HypervisorExec && vm.Exec != nil && len(vm.Exec.Command) > 0:
		d.checkProgram("exec.command", d.keyPos("exec"), vm.Exec.Command[0])
	case vm.Hypervisor == HypervisorQEMU && vm.QEMU != nil:
		d.checkProgram("qemu.binary", d.keyPos("qemu"), vm.QEMU.Binary)
	case vm.Hypervisor == HypervisorBhyve && vm.Bhyve != nil:
		d.checkProgram("bhyve.binary", d.keyPos("bhyve"), vm.Bhyve.Binary)
		d.checkProgram("bhyve.bhyvectl", d.keyPos("bhyve"), vm.Bhyve.Bhyvectl)
	}
}

// safeName is base if it is a valid VM name, else a valid name made from
// it: a directory named "../x" or "a b" must not put its name into a
// path or a URL, even while its config is broken.
func safeName(base string) string {
	if ValidateName(base) == nil {
		return base
	}
	b := []byte(base)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	s := string(b)
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		s = "x" + s
	}
	if len(s) > MaxNameLen {
		s = s[:MaxNameLen]
	}
	return s
}

// controlChar returns the first control character in s (C0, DEL, C1), or
// -1. Text printed in a status table must not be able to move the cursor
// or start new lines.
func controlChar(s string) rune {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return r
		}
	}
	return -1
}
