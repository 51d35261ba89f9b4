package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vmstated/vmstated/api"
)

// printTable prints one line per VM, for reading at a glance.
func printTable(w io.Writer, list []api.Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, tableHeader)
	for _, st := range list {
		fmt.Fprintln(tw, tableRow(st, now))
	}
	tw.Flush()
}

// printHostTable is printTable for several hosts, with a HOST column.
func printHostTable(w io.Writer, rows []hostStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\t"+tableHeader)
	for _, r := range rows {
		fmt.Fprintln(tw, r.Host+"\t"+tableRow(r.Status, now))
	}
	tw.Flush()
}

const tableHeader = "NAME\tSTATE\tSINCE\tPID\tCPUS\tMEMORY\tOWNER\tRESTARTS\tADDRESS\tREASON"

func tableRow(st api.Status, now time.Time) string {
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s",
		st.Name, stateCell(st), ago(st.Since, now), dash(st.PID), dash(st.CPUs),
		memory(st.Memory), owner(st), min(st.Restarts, st.MaxRestart), st.MaxRestart, addressCell(st), reasonCell(st))
}

// addressCell shows the guest's first address and how many more there
// are: as its agent reports them or, without an agent's word, the ones
// the daemon's local networks gave it.
func addressCell(st api.Status) string {
	addrs := st.IPAddresses
	if len(addrs) == 0 {
		for _, n := range st.Networks {
			if n.Address != "" {
				addrs = append(addrs, n.Address)
			}
		}
	}
	switch n := len(addrs); n {
	case 0:
		return "-"
	case 1:
		return addrs[0]
	default:
		return fmt.Sprintf("%s(+%d)", addrs[0], n-1)
	}
}

// stateCell marks a desired state that differs (a start waiting for the
// VMs it depends on, a stop waiting for the current step). A failed VM
// goes nowhere until failreset, whatever its desired state, so an arrow
// there would read as a transition that is not coming.
func stateCell(st api.Status) string {
	s := string(st.State)
	if st.Desired != "" && st.Desired != st.State && st.State.Steady() && st.State != api.StateFailed {
		s += "->" + string(st.Desired)
	}
	return s
}

func reasonCell(st api.Status) string {
	var parts []string
	if st.ConfigError != "" {
		parts = append(parts, "config error: "+oneLine(st.ConfigError))
	}
	if st.Pending {
		parts = append(parts, "new config at next start")
	}
	if st.Removed {
		parts = append(parts, "config removed")
	}
	if st.RecordError != "" {
		parts = append(parts, "state not saved: "+oneLine(st.RecordError))
	}
	if len(st.WaitingFor) > 0 {
		parts = append(parts, "waiting for "+strings.Join(st.WaitingFor, ", "))
	}
	if st.Saved != nil {
		parts = append(parts, "guest saved: "+savedCell(*st.Saved))
	}
	if st.Hook != "" {
		parts = append(parts, "waiting for its "+string(st.Hook)+" hook")
	}
	if st.Reason != "" {
		parts = append(parts, oneLine(st.Reason))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

func owner(st api.Status) string {
	switch {
	case st.Owner != "" && st.Group != "":
		return st.Owner + ":" + st.Group
	case st.Owner != "":
		return st.Owner
	case st.Group != "":
		return ":" + st.Group
	}
	return "-"
}

func dash(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// memory shows MiB as M, or G when a whole number of GiB.
func memory(mib int64) string {
	switch {
	case mib <= 0:
		return "-"
	case mib%1024 == 0:
		return strconv.FormatInt(mib/1024, 10) + "G"
	}
	return strconv.FormatInt(mib, 10) + "M"
}

// savedCell is a saved guest in the table: its size and when it was
// saved.
func savedCell(x api.SavedState) string {
	return bytesSize(x.Size) + " at " + x.Time.Local().Format("2006-01-02 15:04:05")
}

// bytesSize shows a file size in MiB (KiB below one).
func bytesSize(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%dK", (n+1023)>>10)
	}
	return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
}

// ago shows how long ago t was, coarsely: 45s, 12m, 3h05m, 2d04h.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// printDetail shows every field of one VM.
func printDetail(w io.Writer, st api.Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("name", st.Name)
	row("state", string(st.State))
	if st.Desired != st.State {
		row("desired", string(st.Desired))
	}
	if !st.Since.IsZero() {
		row("since", st.Since.Local().Format(time.RFC3339)+" ("+ago(st.Since, now)+" ago)")
	}
	if st.PID != 0 {
		row("pid", strconv.Itoa(st.PID))
	}
	if st.Hook != "" {
		row("hook", string(st.Hook)+" (in progress; the VM waits for it)")
	}
	if len(st.WaitingFor) > 0 {
		row("waiting for", strings.Join(st.WaitingFor, ", ")+" (it starts once they are up)")
	}
	if st.RecordError != "" {
		row("state not saved", oneLine(st.RecordError)+" (retrying; free or fix the state directory)")
	}
	row("hypervisor", st.Hypervisor)
	row("cpus", dash(st.CPUs))
	row("memory", memory(st.Memory))
	row("owner", st.Owner)
	row("group", st.Group)
	row("description", st.Description)
	row("directory", st.Dir)
	row("autostart", strconv.FormatBool(st.Autostart))
	if st.OnHostShutdown == "suspend" {
		row("host shutdown", "suspends it; it resumes when the host is up again")
	}
	row("depends", strings.Join(st.Depends, ", "))
	row("restarts", restartsDetail(st))
	for i, n := range st.Networks {
		row("nic "+strconv.Itoa(i), networkDetail(n))
	}
	row("reason", st.Reason)
	if x := st.LastExit; x != nil {
		v := x.Reason
		if x.Detail != "" {
			v += " (" + x.Detail + ")"
		}
		v += fmt.Sprintf(", status %d", x.Code)
		if x.Signal != "" {
			v += ", " + x.Signal
		}
		if !x.Time.IsZero() {
			v += ", " + x.Time.Local().Format(time.RFC3339)
		}
		row("last exit", v)
	}
	row("ip addresses", strings.Join(st.IPAddresses, ", "))
	row("vnc", st.VNCAddress)
	if x := st.Saved; x != nil {
		v := fmt.Sprintf("%s, %s", bytesSize(x.Size), x.Time.Local().Format(time.RFC3339))
		if x.SavedBy != "" {
			v += ", by " + x.SavedBy
		}
		row("saved guest", v+" (start restores it, discard drops it)")
	}
	row("config error", oneLine(st.ConfigError))
	if st.Pending {
		row("pending", "a changed config applies at the next start")
	}
	if st.Removed {
		row("removed", "the config directory is gone; the VM is dropped once stopped")
	}
	tw.Flush()
}

// restartsDetail says how much of the restart budget is used. The count
// includes the restart that found the budget spent, which was never done:
// "4 of 3" would read as one restart too many.
func restartsDetail(st api.Status) string {
	if st.Restarts <= st.MaxRestart {
		return fmt.Sprintf("%d of %d", st.Restarts, st.MaxRestart)
	}
	return fmt.Sprintf("%d of %d; restart %d was refused, the budget is spent (failreset clears it)",
		st.MaxRestart, st.MaxRestart, st.Restarts)
}

// printInfo shows a nested map as sorted "key: value" lines, nested keys
// joined with dots and list items numbered.
func printInfo(w io.Writer, info map[string]any) {
	var lines []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				lines = append(lines, prefix+": {}")
			}
			for k, val := range x {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, val)
			}
		case []any:
			if len(x) == 0 {
				lines = append(lines, prefix+": []")
			}
			for i, val := range x {
				walk(fmt.Sprintf("%s[%d]", prefix, i), val)
			}
		case string:
			lines = append(lines, prefix+": "+x)
		case nil:
			lines = append(lines, prefix+": -")
		default:
			b, _ := json.Marshal(x)
			lines = append(lines, prefix+": "+string(b))
		}
	}
	walk("", info)
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

// formatEvent shows one event on one line.
func formatEvent(ev api.Event) string {
	t := ev.Time.Local().Format("2006-01-02 15:04:05")
	switch ev.Kind {
	case api.KindTransition:
		s := fmt.Sprintf("%s #%d %s: %s -> %s (%s)", t, ev.Seq, ev.VM, ev.From, ev.To, ev.Event)
		if ev.Reason != "" {
			s += ": " + ev.Reason
		}
		return s
	case api.KindLost:
		return fmt.Sprintf("%s #%d lost: %s", t, ev.Seq, ev.Reason)
	case api.KindHook:
		if ev.Skipped {
			return fmt.Sprintf("%s #%d %s: no %s hook", t, ev.Seq, ev.VM, ev.To)
		}
		if ev.Reason != "" {
			return fmt.Sprintf("%s #%d %s: hook %s failed: %s", t, ev.Seq, ev.VM, ev.To, ev.Reason)
		}
		return fmt.Sprintf("%s #%d %s: hook %s finished", t, ev.Seq, ev.VM, ev.To)
	}
	s := fmt.Sprintf("%s #%d %s: %s", t, ev.Seq, ev.VM, ev.Kind)
	if ev.Reason != "" {
		s += ": " + ev.Reason
	}
	return s
}

// networkDetail is one line about a network the daemon set up.
func networkDetail(n api.Network) string {
	s := n.Type + ", tap " + n.Tap
	if n.Bridge != "" {
		s += " on bridge " + n.Bridge
	}
	if n.Address != "" {
		s += ", address " + n.Address + ", gateway " + n.Gateway
	}
	if n.NAT {
		s += ", nat"
	}
	return s
}
