package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/diskimage"
)

// cmdCreate makes disk images and VM directories; neither needs a daemon.
func cmdCreate(e *env, args []string) error {
	if len(args) > 0 && strings.HasPrefix(args[0], "-") {
		// Flags come after disk or vm; before them only the common
		// ones (-h, -o), parsed as every command does.
		_, err := e.parse(e.newFlags("create"), args, 0, 0)
		return err
	}
	if len(args) == 0 {
		return usagef("create what? 'vmstatedctl create disk ...' or 'vmstatedctl create vm ...'")
	}
	switch args[0] {
	case "disk":
		return cmdCreateDisk(e, args[1:])
	case "vm":
		return cmdCreateVM(e, args[1:])
	}
	return usagef("create %s: want disk or vm", args[0])
}

// createFlags is a flag set without the global -s, which create disk
// uses for the size as vmctl does (-s before the command still names the
// socket).
func (e *env) createFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&e.output, "o", e.output, "output format")
	return fs
}

func cmdCreateDisk(e *env, args []string) error {
	fs := e.createFlags("create disk")
	format := fs.String("f", "", "raw or qcow2")
	size := fs.String("s", "", "size")
	base := fs.String("b", "", "base image")
	input := fs.String("i", "", "image to copy")
	pos, err := e.parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("name the image to create: vmstatedctl create disk -s 10G /var/lib/vm/web.img")
	}
	if *base != "" && *input != "" {
		return usagef("-b (a base image) and -i (an image to copy) exclude each other; give one")
	}
	req := diskimage.Request{Path: pos[0], Format: *format, Base: *base, Input: *input}
	if *size != "" {
		if req.Size, err = diskimage.ParseSize(*size); err != nil {
			return usagef("-s %v", err)
		}
	}
	res, err := diskimage.Create(e.ctx, req)
	if err != nil {
		return err
	}
	if e.json() {
		writeJSON(e.stdout, res)
		return nil
	}
	from := ""
	switch {
	case res.Base != "":
		from = " over base " + res.Base
	case res.Input != "":
		from = " copied from " + res.Input
	}
	fmt.Fprintf(e.stdout, "created %s: %s image of %s%s\n", res.Path, res.Format, diskimage.FormatSize(res.Size), from)
	return nil
}

// stringsFlag collects a repeated flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// vmDraft is what create vm was asked for.
type vmDraft struct {
	name     string
	memory   string
	cpus     int
	disks    []draftDisk
	cdrom    string
	template string
	// kernel, initrd and append boot a kernel directly.
	kernel, initrd, append string
	nics                   []draftNIC
}

type draftDisk struct{ path, format string }

// draftNIC is one -n: type local (nat with local:nat), bridge:NAME,
// tap:NAME or user.
type draftNIC struct {
	typ, name string
	nat       bool
}

// parseNIC reads one -n argument.
func parseNIC(s string) (draftNIC, error) {
	typ, arg, hasArg := strings.Cut(s, ":")
	bad := func(why string) (draftNIC, error) {
		return draftNIC{}, usagef("-n %s: %s; write -n local, -n local:nat, -n bridge:br0, -n tap:tap0 or -n user", s, why)
	}
	switch typ {
	case config.NICLocal:
		if hasArg && arg != "nat" {
			return bad("local takes only :nat")
		}
		return draftNIC{typ: typ, nat: hasArg}, nil
	case config.NICUser:
		if hasArg {
			return bad("user takes no argument")
		}
		return draftNIC{typ: typ}, nil
	case config.NICBridge, config.NICTap:
		if arg == "" {
			return bad(typ + " needs the interface's name")
		}
		if strings.ContainsAny(arg, "$\"\\ \t\n/:") || len(arg) > 15 {
			return bad(fmt.Sprintf("%q is not an interface name (at most 15 characters, no spaces, slashes or colons)", arg))
		}
		return draftNIC{typ: typ, name: arg}, nil
	}
	return bad("unknown network type " + strconv.Quote(typ))
}

func cmdCreateVM(e *env, args []string) error {
	fs := e.createFlags("create vm")
	memory := fs.String("m", "", "memory")
	cpus := fs.Int("p", 0, "virtual CPUs")
	var disks stringsFlag
	fs.Var(&disks, "d", "disk image (repeatable)")
	cdrom := fs.String("r", "", "ISO image")
	template := fs.String("t", "", "template")
	kernel := fs.String("k", "", "kernel to boot directly")
	initrd := fs.String("i", "", "initrd for -k")
	appendArgs := fs.String("a", "", "kernel command line for -k")
	var nets stringsFlag
	fs.Var(&nets, "n", "network: local, local:nat, bridge:NAME, tap:NAME or user (repeatable)")
	root := fs.String("c", hostDefaultPaths().ConfigDir, "config directory")
	pos, err := e.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	d := vmDraft{name: pos[0], memory: *memory, cpus: *cpus, append: *appendArgs}
	if err := config.ValidateName(d.name); err != nil {
		return usagef("VM name %q: %v", d.name, err)
	}
	if *cpus < 0 {
		return usagef("-p %d: give a number of CPUs of 1 or more", *cpus)
	}
	if *root == "" {
		return usagef("no default config directory (HOME is not set); name one with -c")
	}
	absRoot, err := filepath.Abs(*root)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(absRoot); err != nil || !fi.IsDir() {
		return fmt.Errorf("config directory %s does not exist; create it or name another with -c", absRoot)
	}
	for _, p := range disks {
		abs, err := existingFile(p, "disk", "create it with 'vmstatedctl create disk'")
		if err != nil {
			return err
		}
		d.disks = append(d.disks, draftDisk{path: abs, format: diskFormat(e, abs)})
	}
	if *cdrom != "" {
		if d.cdrom, err = existingFile(*cdrom, "ISO image", "fix the path"); err != nil {
			return err
		}
	}
	if *template != "" {
		if d.template, err = templateFile(absRoot, *template); err != nil {
			return err
		}
	}
	if *kernel == "" && (*initrd != "" || *appendArgs != "") {
		return usagef("-i and -a go with -k: name the kernel to boot with -k /path/to/vmlinuz")
	}
	if *kernel != "" {
		if d.kernel, err = existingFile(*kernel, "kernel", "fix the path"); err != nil {
			return err
		}
	}
	if *initrd != "" {
		if d.initrd, err = existingFile(*initrd, "initrd", "fix the path"); err != nil {
			return err
		}
	}
	if strings.ContainsAny(*appendArgs, "$\"\\\n\r\x00") {
		return usagef("-a: the kernel command line cannot hold $, quotes, backslashes or line breaks here; edit the config's append key for those")
	}
	for _, s := range nets {
		n, err := parseNIC(s)
		if err != nil {
			return err
		}
		d.nics = append(d.nics, n)
	}
	dir, err := writeVMDir(absRoot, d)
	if err != nil {
		return err
	}
	if e.json() {
		writeJSON(e.stdout, map[string]string{"name": d.name, "dir": dir, "config": filepath.Join(dir, config.FileName)})
		return nil
	}
	fmt.Fprintf(e.stdout, "created VM %s in %s; start it with 'vmstatedctl start %s'\n", d.name, dir, d.name)
	return nil
}

func existingFile(p, what, hint string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if err := plainPath(what, abs); err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%s %s: %v; %s", what, abs, unwrapPath(err), hint)
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		return "", fmt.Errorf("%s %s is not a file or a device", what, abs)
	}
	return abs, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// diskFormat asks qemu-img for the image's format; without qemu-img the
// name decides.
func diskFormat(e *env, path string) string {
	if info, err := diskimage.Inspect(e.ctx, "", path); err == nil && (info.Format == diskimage.QCOW2 || info.Format == diskimage.Raw) {
		return info.Format
	}
	if strings.HasSuffix(path, ".qcow2") {
		return diskimage.QCOW2
	}
	return diskimage.Raw
}

// templateFile resolves -t: a file path, or a bare name for
// <root>/templates/<name>.conf (the layout vmstated.conf(5) suggests).
func templateFile(root, t string) (string, error) {
	p := t
	if !strings.ContainsRune(t, '/') {
		p = filepath.Join(root, "templates", t+".conf")
		if _, err := os.Stat(p); err != nil {
			if _, err2 := os.Stat(t); err2 == nil {
				p = t
			}
		}
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if err := plainPath("template", abs); err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("template %s: %v; name a file of settings (see Templates in vmstated.conf(5)) or a name under %s", abs, unwrapPath(err), filepath.Join(root, "templates"))
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("template %s is not a regular file; a template is a file of settings without a VM name around them", abs)
	}
	return abs, nil
}

// quote writes s as a UCL string; plainPath has ruled out the characters
// UCL would read differently.
func quote(s string) string { return `"` + s + `"` }

// plainPath refuses paths that a UCL string cannot carry as they are ($
// starts a variable; quotes and backslashes escape).
func plainPath(what, p string) error {
	if strings.ContainsAny(p, "$\"\\\n\r\x00") {
		return fmt.Errorf("%s %q: paths with $, quotes, backslashes or line breaks cannot be written into the config; rename or link the file", what, p)
	}
	return nil
}

// vmConfigText is the config file create vm writes: every line says what
// it does, so that the file is where a user learns to change it.
func vmConfigText(d vmDraft, now time.Time) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# VM %s, written by 'vmstatedctl create vm' on %s.", d.name, now.UTC().Format("2006-01-02"))
	w("# Edit it freely: the daemon notices changes by itself (a running VM")
	w("# takes them at its next start). Every key is in vmstated.conf(5).")
	w("%s {", d.name)
	if d.template != "" {
		w("    # Shared settings; the lines after .priority 1 win over them.")
		w("    .include %s", quote(d.template))
		w("    .priority 1")
	}
	if d.template == "" {
		w("    # Run the VM under QEMU.")
		w("    hypervisor = qemu;")
	}
	if d.memory != "" || d.template == "" {
		m := d.memory
		if m == "" {
			m = strconv.Itoa(config.DefaultQEMUMemoryMB)
		}
		if _, err := strconv.ParseInt(m, 10, 64); err != nil {
			m = quote(m)
		}
		w("    # Guest memory: a number of MB, or a size such as 2GB.")
		w("    memory = %s;", m)
	}
	if d.cpus > 0 || d.template == "" {
		w("    # Virtual CPUs.")
		w("    cpus = %d;", max(d.cpus, config.DefaultQEMUCPUs))
	}
	if len(d.disks) > 0 || d.cdrom != "" || d.kernel != "" || len(d.nics) > 0 {
		if d.template != "" {
			w("    # This section replaces the template's qemu section as a whole.")
		}
		w("    qemu {")
		for i, disk := range d.disks {
			w("        # Disk %d, a virtio block device.", i+1)
			w("        disk { path = %s; format = %s; }", quote(disk.path), disk.format)
		}
		if d.cdrom != "" {
			w("        # An ISO image on a read-only CD drive.")
			w("        cdrom = %s;", quote(d.cdrom))
		}
		if d.kernel != "" {
			w("        # Boot this kernel directly instead of from a disk.")
			w("        kernel = %s;", quote(d.kernel))
		}
		if d.initrd != "" {
			w("        initrd = %s;", quote(d.initrd))
		}
		if d.append != "" {
			w("        # The kernel command line.")
			w("        append = %s;", quote(d.append))
		}
		for _, n := range d.nics {
			switch n.typ {
			case config.NICLocal:
				w("        # A private /31 of its own with DHCP from the daemon (vmctl start -L).")
				if n.nat {
					w("        # nat = true masquerades its traffic out of the host's interfaces.")
					w("        nic { type = local; nat = true; }")
				} else {
					w("        nic { type = local; }")
				}
			case config.NICBridge:
				w("        # A tap the daemon makes and attaches to bridge %s.", n.name)
				w("        nic { type = bridge; bridge = %s; }", quote(n.name))
			case config.NICTap:
				w("        # The tap device %s, made by a start_network hook or by QEMU.", n.name)
				w("        nic { type = tap; ifname = %s; }", quote(n.name))
			case config.NICUser:
				w("        # QEMU's own NAT.")
				w("        nic { type = user; }")
			}
		}
		w("    }")
	}
	w("}")
	return b.String()
}

// writeVMDir writes the VM's directory under root. The config is written
// and loaded in a hidden directory (which the daemon ignores) and only a
// config that loads is moved into place, so the daemon never sees a
// half-written or broken VM; an existing directory is never touched.
func writeVMDir(root string, d vmDraft) (string, error) {
	dir := filepath.Join(root, d.name)
	if _, err := os.Lstat(dir); err == nil {
		return "", fmt.Errorf("%s already exists; it is left as it is: remove it first or choose another name", dir)
	}
	snap := config.LoadRoot(root, config.LoadOptions{})
	if vm, ok := snap.VMs[d.name]; ok {
		return "", fmt.Errorf("a VM named %s already exists in %s; choose another name", d.name, vm.Dir)
	}
	tmp, err := os.MkdirTemp(root, "."+d.name+".new-")
	if err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, config.FileName), []byte(vmConfigText(d, time.Now())), 0o644); err != nil {
		return "", fmt.Errorf("writing the config: %w", err)
	}
	vm, diags := config.LoadDir(tmp, config.LoadOptions{})
	if vm == nil || diags.HasErrors() {
		var msgs []string
		for _, dg := range diags.Errors() {
			msgs = append(msgs, strings.ReplaceAll(dg.String(), tmp, dir))
		}
		return "", fmt.Errorf("the new config does not load, nothing was created: %s", strings.Join(msgs, "; "))
	}
	if err := renameNoReplace(tmp, dir); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("%s already exists; it is left as it is: remove it first or choose another name", dir)
		}
		return "", fmt.Errorf("moving the new VM into %s: %w", dir, err)
	}
	return dir, nil
}

func renameChecked(from, to string) error {
	if _, err := os.Lstat(to); err == nil {
		return os.ErrExist
	}
	return os.Rename(from, to)
}
