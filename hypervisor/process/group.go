package process

import (
	"fmt"
	"strings"
	"time"
)

// Group is every process of a VM whose program starts others (an exec VM:
// a launcher script and the VMM it runs, or a shell and its jobs). Start
// makes each process the leader of its own process group; on Linux, as
// root with a cgroup v2 hierarchy, it also starts it in a cgroup of its
// own, which holds even the children that leave the process group
// (setsid, daemonizing). A Group is plain data, so that a restarted daemon
// can rebuild it from a handle.
type Group struct {
	// PGID is the process group, the leader's pid.
	PGID int
	// LeaderStart is the leader's start time (StartTimeOf). Once the
	// leader is gone its pid may name another process, whose own group
	// is not ours: the start time tells them apart.
	LeaderStart uint64
	// Cgroup is the cgroup v2 directory holding the processes, "" when
	// none is used.
	Cgroup string
}

// Members returns the live processes of the group (none once it is
// over).
func (g Group) Members() ([]int, error) { return g.members() }

// leftoverWait bounds how long KillAll waits for killed processes to go.
// SIGKILL ends a process at once unless it is stuck in the kernel (a hung
// NFS server, a device in D state); then waiting longer does not help.
const leftoverWait = 10 * time.Second

// KillAll kills every process left in the group, once its leader has
// exited, and waits until they are gone. It returns how many it killed;
// the error names those that were still there after leftoverWait.
func (g Group) KillAll() (int, error) {
	deadline := time.Now().Add(leftoverWait)
	killed := map[int]bool{}
	for {
		left, err := g.killRound(deadline)
		for _, pid := range left {
			killed[pid] = true
		}
		if err != nil {
			return len(killed), err
		}
		if len(left) == 0 {
			return len(killed), nil
		}
		if time.Now().After(deadline) {
			pids := make([]string, len(left))
			for i, pid := range left {
				pids[i] = fmt.Sprint(pid)
			}
			return len(killed), fmt.Errorf("processes %s of the VM still run %s after SIGKILL (stuck in the kernel?)", strings.Join(pids, ", "), leftoverWait)
		}
	}
}

// describeKilled says, for an Exit's detail, what KillAll did.
func describeKilled(n int, err error) string {
	var parts []string
	if n == 1 {
		parts = append(parts, "1 process the VM left behind was killed")
	} else if n > 1 {
		parts = append(parts, fmt.Sprintf("%d processes the VM left behind were killed", n))
	}
	if err != nil {
		parts = append(parts, err.Error())
	}
	return strings.Join(parts, "; ")
}

// EndLeftovers kills what the VM left behind once its leader exited and
// removes its cgroup. The text says what was done, for the Exit's detail;
// it is empty when the leader left nothing behind.
func (g Group) EndLeftovers() string {
	n, err := g.KillAll()
	msg := describeKilled(n, err)
	if rerr := g.Remove(); rerr != nil {
		if msg != "" {
			msg += "; "
		}
		msg += rerr.Error()
	}
	return msg
}
