package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/vmstated/vmstated/trust"
	"github.com/vmstated/vmstated/ucl"
)

// LoadOptions tune loading. The zero value is ready to use.
type LoadOptions struct {
	// Logf receives debug messages (entries ignored and why). Nil means
	// silent. It may be called from several goroutines at once.
	Logf func(format string, args ...any)
	// DefaultHypervisor is used when a config has no hypervisor key.
	// Empty means the host's: bhyve on FreeBSD, qemu elsewhere.
	DefaultHypervisor string
	// QEMUUser is the user QEMU VMs drop to (qemu.user) when their
	// config names none; empty means none.
	QEMUUser string
	// Trust selects the trust rule for the files a config names or
	// includes and the programs it runs; the zero value applies it when
	// the process runs as root.
	Trust TrustMode
}

// TrustMode selects whether the trust rule of package trust applies.
type TrustMode int

const (
	// TrustAuto applies the rule when the process runs as root.
	TrustAuto TrustMode = iota
	// TrustOn always applies it.
	TrustOn
	// TrustOff never applies it (only regular files are read).
	TrustOff
)

func (o LoadOptions) strict() bool {
	switch o.Trust {
	case TrustOn:
		return true
	case TrustOff:
		return false
	}
	return trust.Strict()
}

func (o LoadOptions) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// defaultHypervisor is the hypervisor of a config that names none.
func (o LoadOptions) defaultHypervisor() string {
	if o.DefaultHypervisor != "" {
		return o.DefaultHypervisor
	}
	return HostHypervisor()
}

// HostHypervisor is the default hypervisor of the host the daemon runs on.
func HostHypervisor() string {
	if runtime.GOOS == "freebsd" {
		return HypervisorBhyve
	}
	return HypervisorQEMU
}

// LoadDir loads and validates the VM directory dir on its own: everything
// but the checks that need the other VMs (duplicate names, depends). It
// returns the VM, or nil when there are errors, and every diagnostic found
// (errors and warnings; the warnings are also in VM.Warnings).
func LoadDir(dir string, opts LoadOptions) (*VM, Diagnostics) {
	r := loadDir(dir, opts, newIDCache())
	return r.vm, r.diags
}

// loadDir loads one directory. The result also holds the VM's name as far
// as it could be found, so that an invalid directory can still be named in
// reports and cross-checks, and the directories of the files it included,
// so that the watcher can watch them even while the config is broken.
func loadDir(dir string, opts LoadOptions, ids *idCache) *dirResult {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = filepath.Clean(dir)
	}
	r := &dirResult{dir: abs}
	var d *decoder
	r.vm, r.diags, r.name, d = loadAbsDir(abs, opts, ids)
	if d != nil {
		r.watch = append(r.watch, d.globDirs...)
		r.globs, r.complete = d.globs, d.parsed
		r.includes = append([]string(nil), d.vm.Includes...)
		for _, inc := range d.vm.Includes {
			if dir := filepath.Dir(inc); !containsString(r.watch, dir) {
				r.watch = append(r.watch, dir)
			}
		}
	}
	return r
}

func loadAbsDir(abs string, opts LoadOptions, ids *idCache) (*VM, Diagnostics, string, *decoder) {
	file := filepath.Join(abs, FileName)
	fallbackName := safeName(filepath.Base(abs))
	d := &decoder{opts: opts, dir: abs, file: file, ids: ids, strict: opts.strict()}
	d.vm = &VM{Dir: abs, File: file, set: map[string]bool{}, scalars: map[string]string{}}
	data, err := d.readFile(file)
	if err != nil {
		msg := fmt.Sprintf("cannot read the config file: %v", err)
		if errors.Is(err, os.ErrNotExist) {
			msg = "no config file: create " + file + " (UCL: NAME { key = value; ... })"
		}
		return nil, Diagnostics{{Pos: ucl.Pos{File: file}, Severity: Error, Msg: msg}}, fallbackName, nil
	}
	root, err := ucl.Parse(data, ucl.Options{
		Filename:      file,
		LowercaseKeys: true,
		Macros:        true,
		Vars:          map[string]string{"FILENAME": file, "CURDIR": abs},
		ReadFile:      d.readInclude,
		Glob:          d.globInclude,
	})
	if err != nil {
		pos := ucl.Pos{File: file}
		msg := err.Error()
		var pe *ucl.ParseError
		if errors.As(err, &pe) {
			pos, msg = pe.Pos, pe.Msg
			if pos.File == "" {
				pos.File = file
			}
			for _, from := range pe.IncludedFrom {
				msg += " (included from " + from.String() + ")"
			}
		}
		return nil, Diagnostics{{Pos: pos, Severity: Error, Msg: "syntax error: " + msg}}, fallbackName, d
	}
	d.parsed = true
	if n := countKeys(root, MaxKeys); n > MaxKeys {
		return nil, Diagnostics{{Pos: ucl.Pos{File: file}, Severity: Error, Msg: fmt.Sprintf("the config and its includes hold more than %d keys (the limit); make it smaller", MaxKeys)}}, fallbackName, d
	}
	name := d.decode(root, fallbackName)
	if ValidateName(name) != nil {
		// A name that is not valid never names anything: not a file, not
		// an API path. The directory stands in for it.
		name = fallbackName
	}
	sortDiagnostics(d.diags)
	if d.diags.HasErrors() {
		return nil, d.diags, name, d
	}
	d.vm.Warnings = d.diags.Warnings()
	d.vm.Digest = digest(d.vm)
	return d.vm, d.diags, name, d
}

// readInclude reads a file named by .include and remembers it, so that the
// watcher can notice when it changes.
func (d *decoder) readInclude(path string) ([]byte, error) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if !containsString(d.vm.Includes, path) {
		d.vm.Includes = append(d.vm.Includes, path)
	}
	return d.readFile(path)
}

// globInclude expands an .include pattern and remembers the pattern's
// directory: a file added there later may match it.
func (d *decoder) globInclude(pattern string) ([]string, error) {
	if abs, err := filepath.Abs(pattern); err == nil {
		pattern = abs
	}
	if dir := filepath.Dir(pattern); !containsString(d.globDirs, dir) {
		d.globDirs = append(d.globDirs, dir)
	}
	if !containsString(d.globs, pattern) {
		d.globs = append(d.globs, pattern)
	}
	return filepath.Glob(pattern)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// digest hashes what the daemon uses of a VM: its exported fields and its
// scalar values, not the file's spelling.
func digest(vm *VM) string {
	b, err := json.Marshal(struct {
		VM      *VM
		Scalars map[string]string
	}{vm, vm.scalars})
	if err != nil {
		// Cannot happen: every field is marshalable. Fall back to
		// something unique so that a change is never hidden.
		return fmt.Sprintf("unmarshalable-%p", vm)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// decoder turns a parsed file into a VM, collecting diagnostics.
type decoder struct {
	opts     LoadOptions
	dir      string
	file     string
	ids      *idCache
	vm       *VM
	diags    Diagnostics
	globDirs []string
	// globs are the .include patterns seen, absolute.
	globs []string
	// parsed is set once the whole file, includes and all, has parsed.
	parsed bool
	tag    string
	strict bool
	budget readBudget
}

func (d *decoder) errf(pos ucl.Pos, key, format string, args ...any) {
	if pos.File == "" {
		pos.File = d.file
	}
	d.diags = append(d.diags, Diagnostic{Pos: pos, Key: key, Severity: Error, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) warnf(pos ucl.Pos, key, format string, args ...any) {
	if pos.File == "" {
		pos.File = d.file
	}
	d.diags = append(d.diags, Diagnostic{Pos: pos, Key: key, Severity: Warning, Msg: fmt.Sprintf(format, args...)})
}

// isSectionValue reports whether n is a section, or a key repeated with
// sections as values.
func isSectionValue(n *ucl.Node) bool {
	if n.Kind == ucl.Object {
		return true
	}
	if n.Kind == ucl.Array && n.Implicit && len(n.Items) > 0 {
		for _, it := range n.Items {
			if it.Kind != ucl.Object {
				return false
			}
		}
		return true
	}
	return false
}

// decode fills d.vm from the file's root and returns the VM's name.
func (d *decoder) decode(root *ucl.Node, fallbackName string) string {
	filePos := ucl.Pos{File: d.file, Line: 1, Col: 1}
	if root == nil || root.Kind != ucl.Object {
		kind := "nothing"
		if root != nil {
			kind = kindName(root.Kind)
			filePos = root.Pos
		}
		d.errf(filePos, "", "the file holds %s; it must hold NAME { key = value; ... } or key = value settings", kind)
		return fallbackName
	}
	if len(root.Fields) == 0 {
		d.errf(filePos, "", "the file has no settings; write NAME { key = value; ... } (see vmstated.conf(5))")
		return fallbackName
	}
	body := root
	// vmstated's form is one section whose key is the VM's name. A file
	// whose every top-level key is an unknown section is read that way.
	tagged := true
	for _, f := range root.Fields {
		if _, known := topKeys[f.Key]; known || !isSectionValue(f.Value) {
			tagged = false
			break
		}
	}
	if tagged {
		if len(root.Fields) > 1 {
			var names []string
			for _, f := range root.Fields {
				names = append(names, f.Key)
			}
			d.errf(root.Fields[1].KeyPos, root.Fields[1].Key, "the file defines %d VMs (%s); each VM needs a directory of its own", len(names), strings.Join(names, ", "))
			return fallbackName
		}
		f := root.Fields[0]
		if f.Value.Kind != ucl.Object {
			d.errf(f.Value.Items[len(f.Value.Items)-1].Pos, f.Key, "VM %s is defined %d times in this file; merge the sections into one", f.Key, len(f.Value.Items))
			return fallbackName
		}
		d.tag = f.Key
		body = f.Value
	}
	if !tagged {
		// A VM section next to top-level keys: the writer meant one
		// form or the other, and reading either would drop settings.
		for _, f := range root.Fields {
			if _, known := topKeys[f.Key]; known || f.Value.Kind != ucl.Object || !hasKnownKey(f.Value) {
				continue
			}
			d.errf(f.KeyPos, f.Key, "this looks like a VM section, but the file also has settings outside it; put every setting inside %s { ... } or drop the section braces", f.Key)
			return fallbackName
		}
	}
	d.decodeTop(body)
	d.finish(fallbackName)
	return d.vm.Name
}

// hasKnownKey reports whether a section holds a top-level VM key.
func hasKnownKey(n *ucl.Node) bool {
	for _, f := range n.Fields {
		if _, ok := topKeys[f.Key]; ok {
			return true
		}
	}
	return false
}

// fieldHandler decodes one known key.
type fieldHandler struct {
	fn func(d *decoder, key string, n *ucl.Node)
	// repeatable keys may appear more than once (sections like disk).
	repeatable bool
}

// checkSingle rejects a key given more than once.
func (d *decoder) checkSingle(key string, n *ucl.Node) bool {
	if n.Kind == ucl.Array && n.Implicit && len(n.Items) > 1 {
		d.errf(n.Items[1].Pos, key, "set %d times (first at line %d); keep one", len(n.Items), n.Items[0].Pos.Line)
		return false
	}
	return true
}

func (d *decoder) decodeTop(body *ucl.Node) {
	d.vm.positions = map[string]ucl.Pos{}
	for _, f := range body.Fields {
		if _, dup := d.vm.positions[f.Key]; dup {
			d.errf(f.KeyPos, f.Key, "set more than once (first at line %d); keep one", d.vm.positions[f.Key].Line)
			continue
		}
		d.vm.positions[f.Key] = f.KeyPos
		h, ok := topKeys[f.Key]
		if !ok {
			if s, ok := scalarText(f.Value); ok {
				// Hooks get it: a setting of the user's own.
				d.vm.scalars[f.Key] = s
				msg := "unknown key (passed to hooks as VMSTATED_CFG_" + strings.ToUpper(f.Key) + ")"
				if s := suggest(f.Key, topKeyNames); s != "" {
					msg += "; did you mean " + s + "?"
				}
				d.warnf(f.KeyPos, f.Key, "%s", msg)
				continue
			}
			d.unknownKey(f, "", topKeyNames)
			continue
		}
		if !h.repeatable && !d.checkSingle(f.Key, f.Value) {
			continue
		}
		if f.Value.Kind == ucl.Null {
			d.errf(f.Value.Pos, f.Key, "has no value (null); remove the line to get the default")
			continue
		}
		d.vm.set[f.Key] = true
		h.fn(d, f.Key, f.Value)
	}
}

// unknownKey warns about a key this version does not know, naming the
// closest known one.
func (d *decoder) unknownKey(f ucl.Field, prefix string, known []string) {
	msg := "unknown key, ignored"
	if s := suggest(f.Key, known); s != "" {
		msg += "; did you mean " + s + "?"
	}
	d.warnf(f.KeyPos, prefix+f.Key, "%s", msg)
}

// finish applies defaults and runs the checks that involve several keys.
func (d *decoder) finish(fallbackName string) {
	vm := d.vm
	// Name: the name key, else the tag, else the directory.
	switch {
	case vm.Name != "":
	case d.tag != "":
		vm.Name = d.tag
		if err := ValidateName(vm.Name); err != nil {
			d.errf(ucl.Pos{File: d.file, Line: 1, Col: 1}, "", "VM name %q: %v; rename the section or set name", d.tag, err)
		}
	default:
		vm.Name = fallbackName
		if err := ValidateName(vm.Name); err != nil {
			d.errf(ucl.Pos{File: d.file}, "name", "the directory name %q is not a valid VM name (%v); set name = ...", fallbackName, err)
		}
	}
	if vm.Hypervisor == "" {
		vm.Hypervisor = d.opts.defaultHypervisor()
		switch vm.Hypervisor {
		case HypervisorQEMU, HypervisorBhyve, HypervisorExec:
		default:
			d.errf(d.bodyPos(), "hypervisor", "the default hypervisor %q is not one of qemu, bhyve, exec; set hypervisor in the config", vm.Hypervisor)
			return
		}
	}
	if vm.ScriptPath == "" {
		vm.ScriptPath = d.dir
	}
	if !vm.set["maxrestart"] {
		vm.MaxRestart = DefaultMaxRestart
	}
	if !vm.set["maxrestarttime"] {
		vm.MaxRestartTime = DefaultMaxRestartTime
	}
	if !vm.set["stop_timeout"] {
		vm.StopTimeout = DefaultStopTimeout
	}
	if !vm.set["hook_timeout"] {
		vm.HookTimeout = DefaultHookTimeout
	}
	if vm.OnPoweroff == "" {
		vm.OnPoweroff = DefaultOnPoweroff
	}
	if vm.OnReboot == "" {
		vm.OnReboot = DefaultOnReboot
	}
	if vm.OnCrash == "" {
		vm.OnCrash = DefaultOnCrash
	}
	if vm.OnHostShutdown == "" {
		vm.OnHostShutdown = ActionStop
	}
	if !vm.set["log_max_size"] {
		vm.LogMaxSizeMB = DefaultLogMaxSizeMB
	}
	if !vm.set["log_max_files"] {
		vm.LogMaxFiles = DefaultLogMaxFiles
	}
	if vm.OwnerUID == 0 && !vm.set["owner"] {
		vm.OwnerUID = -1
	}
	if vm.GroupGID == 0 && !vm.set["group"] {
		vm.GroupGID = -1
	}
	for _, dep := range vm.Depends {
		if dep == vm.Name {
			d.errf(d.keyPos("depends"), "depends", "VM %s depends on itself; remove it from the list", vm.Name)
		}
	}
	// CPU topology: with all three set, the counts must agree.
	if vm.CPUs > 0 && vm.Sockets > 0 && vm.Cores > 0 && vm.Sockets*vm.Cores != vm.CPUs {
		d.errf(d.keyPos("cpus"), "cpus", "cpus = %d but sockets × cores = %d × %d = %d; make them agree", vm.CPUs, vm.Sockets, vm.Cores, vm.Sockets*vm.Cores)
	}
	// The sections of hypervisors the VM does not use are checked but
	// have no effect.
	for _, s := range []struct {
		key     string
		present bool
	}{{HypervisorQEMU, vm.QEMU != nil}, {HypervisorExec, vm.Exec != nil}, {HypervisorBhyve, vm.Bhyve != nil}} {
		if s.present && s.key != vm.Hypervisor {
			d.warnf(d.keyPos(s.key), s.key, "section has no effect: this VM's hypervisor is %s", vm.Hypervisor)
		}
	}
	if vm.OnHostShutdown == ActionSuspend && vm.Hypervisor != HypervisorQEMU {
		d.errf(d.keyPos("on_host_shutdown"), "on_host_shutdown", "suspend needs hypervisor qemu (this VM's is %s): only QEMU can save a guest; use stop", vm.Hypervisor)
	}
	if vm.CloudInit != nil && vm.Hypervisor != HypervisorQEMU {
		d.warnf(d.keyPos("cloud_init"), "cloud_init", "section has no effect: only hypervisor qemu attaches a cloud-init seed, this VM's is %s", vm.Hypervisor)
	}
	switch vm.Hypervisor {
	case HypervisorQEMU:
		if vm.QEMU == nil {
			vm.QEMU = &QEMU{}
			vm.QEMU.applyDefaults()
		}
		if vm.MemoryMB == 0 {
			vm.MemoryMB = DefaultQEMUMemoryMB
		}
		if vm.QEMU.User == "" && d.opts.QEMUUser != "" {
			if _, err := d.ids.lookup(d.opts.QEMUUser, false); err != nil {
				d.errf(d.bodyPos(), "qemu.user", "the daemon's default QEMU user (-U): %v", err)
			} else {
				vm.QEMU.User = d.opts.QEMUUser
			}
		}
		if vm.CPUs == 0 {
			vm.CPUs = DefaultQEMUCPUs
			if vm.Sockets > 0 || vm.Cores > 0 {
				vm.CPUs = max(vm.Sockets, 1) * max(vm.Cores, 1)
			}
		}
	case HypervisorBhyve:
		if vm.Bhyve == nil {
			vm.Bhyve = &Bhyve{}
			vm.Bhyve.applyDefaults()
		}
		if !vm.set["configfile"] {
			d.errf(d.bodyPos(), "configfile", "hypervisor bhyve needs configfile = /path/to/bhyve_config (bhyve's key=value file)")
		}
	case HypervisorExec:
		if vm.Exec == nil {
			d.errf(d.bodyPos(), "exec", "hypervisor exec needs a command: exec { command = [ \"/path/to/program\", \"arg\" ]; }")
		}
	}
	d.buildScalars()
	d.checkHookEnv()
	d.checkPrograms()
}

// keyPos is where key was written at the top level, or the file's start.
func (d *decoder) keyPos(key string) ucl.Pos {
	if p, ok := d.vm.positions[key]; ok {
		return p
	}
	return d.bodyPos()
}

func (d *decoder) bodyPos() ucl.Pos {
	return ucl.Pos{File: d.file, Line: 1, Col: 1}
}

func (d *decoder) buildScalars() {
	vm := d.vm
	s := vm.scalars
	put := func(k, v string) {
		if v != "" {
			s[k] = v
		}
	}
	put("name", vm.Name)
	put("configfile", vm.ConfigFile)
	put("scriptpath", vm.ScriptPath)
	put("os", vm.OS)
	put("osversion", vm.OSVersion)
	put("owner", vm.Owner)
	put("group", vm.Group)
	put("description", vm.Description)
	put("maxrestart", itoa(vm.MaxRestart))
	put("maxrestarttime", fmtDuration(vm.MaxRestartTime))
	put("bootrom", vm.BootROM)
	put("generate_acpi_tables", fmt.Sprint(vm.GenerateACPITables))
	put("vmexit_on_halt", fmt.Sprint(vm.VMExitOnHalt))
	if vm.MemoryMB > 0 {
		put("memory", fmt.Sprint(vm.MemoryMB))
	}
	for k, v := range map[string]int{"cpus": vm.CPUs, "sockets": vm.Sockets, "cores": vm.Cores} {
		if v > 0 {
			put(k, itoa(v))
		}
	}
	put("hypervisor", vm.Hypervisor)
	put("autostart", fmt.Sprint(vm.Autostart))
	put("stop_timeout", fmtDuration(vm.StopTimeout))
	put("hook_timeout", fmtDuration(vm.HookTimeout))
	put("on_poweroff", string(vm.OnPoweroff))
	put("on_reboot", string(vm.OnReboot))
	put("on_crash", string(vm.OnCrash))
	put("on_host_shutdown", string(vm.OnHostShutdown))
	put("depends", strings.Join(vm.Depends, " "))
	put("log_max_size", fmt.Sprint(vm.LogMaxSizeMB))
	put("log_max_files", itoa(vm.LogMaxFiles))
}

// suggest returns the known word closest to key when it is close enough
// to be a likely typo.
func suggest(key string, known []string) string {
	best, bestDist := "", 1<<30
	for _, k := range known {
		if dist := editDistance(key, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	limit := 2
	if len(key) > 8 {
		limit = 3
	}
	if bestDist <= limit || (len(key) >= 4 && (strings.HasPrefix(best, key) || strings.HasPrefix(key, best))) {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance, with a swap of two adjacent
// letters counted as one edit.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
