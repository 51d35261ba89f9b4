package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// printInfoSummary shows the parts of a QEMU description a person looks
// for (version, state, CPUs, disks, PCI devices, VNC); keys it does not
// know are shown flattened below. It reports false when nothing was known,
// so the caller shows everything instead.
func printInfoSummary(w io.Writer, info map[string]any) bool {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	known := 0
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	used := map[string]bool{}
	if v, ok := info["version"].(map[string]any); ok {
		used["version"] = true
		known++
		if q, ok := v["qemu"].(map[string]any); ok {
			s := fmt.Sprintf("%v.%v.%v", num(q["major"]), num(q["minor"]), num(q["micro"]))
			if p, _ := v["package"].(string); strings.TrimSpace(p) != "" {
				s += " (" + strings.TrimSpace(p) + ")"
			}
			row("version", s)
		}
	}
	if p, ok := info["pid"]; ok {
		used["pid"] = true
		row("pid", num(p))
	}
	if v, ok := info["status"].(map[string]any); ok {
		used["status"] = true
		known++
		row("status", fmt.Sprint(v["status"]))
	}
	if v, ok := info["kvm"].(map[string]any); ok {
		used["kvm"] = true
		known++
		accel := "tcg"
		if v["enabled"] == true {
			accel = "kvm"
		}
		row("accelerator", accel)
	}
	if v, ok := info["cpus"].([]any); ok {
		used["cpus"] = true
		known++
		target := ""
		if len(v) > 0 {
			if c, ok := v[0].(map[string]any); ok {
				target, _ = c["target"].(string)
			}
		}
		s := fmt.Sprint(len(v))
		if target != "" {
			s += " (" + target + ")"
		}
		row("cpus", s)
	}
	if v, ok := info["block"].([]any); ok {
		used["block"] = true
		used["blockstats"] = true
		known++
		if len(v) == 0 {
			row("disks", "none")
		}
		for _, b := range v {
			m, _ := b.(map[string]any)
			dev, _ := m["device"].(string)
			if dev == "" {
				dev, _ = m["qdev"].(string)
			}
			desc := "empty"
			if ins, ok := m["inserted"].(map[string]any); ok {
				desc = fmt.Sprint(ins["file"])
				if drv, ok := ins["drv"].(string); ok {
					desc += " (" + drv
					if ins["ro"] == true {
						desc += ", read-only"
					}
					desc += ")"
				}
			}
			row("disk "+dev, desc)
		}
	}
	if v, ok := info["pci"].([]any); ok {
		used["pci"] = true
		known++
		for _, b := range v {
			bus, _ := b.(map[string]any)
			devs, _ := bus["devices"].([]any)
			for _, d := range devs {
				m, _ := d.(map[string]any)
				desc := ""
				if ci, ok := m["class_info"].(map[string]any); ok {
					desc, _ = ci["desc"].(string)
				}
				if id, _ := m["qdev_id"].(string); id != "" {
					desc += " [" + id + "]"
				}
				row(fmt.Sprintf("pci %s:%s.%s", num(m["bus"]), num(m["slot"]), num(m["function"])), strings.TrimSpace(desc))
			}
		}
	}
	if v, ok := info["vnc"].(map[string]any); ok {
		used["vnc"] = true
		known++
		s := "off"
		if v["enabled"] == true {
			s = "on"
			if h, ok := v["host"].(string); ok {
				s += " " + h
				if sv, ok := v["service"].(string); ok {
					s += ":" + sv
				}
			}
		}
		if a, ok := info["vnc_address"].(string); ok {
			used["vnc_address"] = true
			s += " (relayed to " + a + ")"
		}
		row("vnc", s)
	}
	if g, ok := info["guest"].(map[string]any); ok {
		// What the guest agent says; the daemon has cleaned it.
		used["guest"] = true
		known++
		str := func(k string) string { s, _ := g[k].(string); return s }
		row("hostname", str("hostname"))
		os := str("os")
		if k := str("kernel"); k != "" {
			os = strings.TrimSpace(os + " (kernel " + k + ")")
		}
		row("os", os)
		row("guest agent", str("agent_version"))
	}
	if v, ok := info["chardev"].([]any); ok {
		used["chardev"] = true
		for _, c := range v {
			m, _ := c.(map[string]any)
			row("chardev "+fmt.Sprint(m["label"]), fmt.Sprint(m["filename"]))
		}
	}
	tw.Flush()
	if known == 0 {
		return false
	}
	rest := map[string]any{}
	for k, v := range info {
		if !used[k] {
			rest[k] = v
		}
	}
	if len(rest) > 0 {
		printInfo(w, rest)
	}
	return true
}

// num shows a JSON number without a fraction when it has none.
func num(v any) string {
	if f, ok := v.(float64); ok && f == float64(int64(f)) {
		return fmt.Sprint(int64(f))
	}
	return fmt.Sprint(v)
}
