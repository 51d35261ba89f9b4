package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/vmstated/vmstated/ucl"
)

// Snapshot is the result of loading a config root.
type Snapshot struct {
	// Root is the config root, absolute.
	Root string
	// VMs are the valid VMs by name.
	VMs map[string]*VM
	// Invalid are the directories whose config has errors, by directory.
	Invalid map[string]*InvalidDir
	// Ignored are entries of the root that are not VM directories.
	Ignored []Ignored
	// RootErr is set when the root itself could not be read; nothing
	// else is filled in then.
	RootErr error
}

// InvalidDir is a VM directory whose config cannot be used.
type InvalidDir struct {
	Dir string
	// Name is the VM's name as far as it could be read (the tag, the name
	// key or the directory's name).
	Name        string
	Diagnostics Diagnostics // errors and warnings
}

// Ignored is an entry of the config root that is not a VM directory.
type Ignored struct {
	Path   string
	Reason string
}

// Names returns the valid VMs' names, sorted.
func (s *Snapshot) Names() []string { return sortedKeys(s.VMs) }

// Diagnostics returns every error and warning of the root, sorted by file
// and position: what `vmstated -n` prints.
func (s *Snapshot) Diagnostics() Diagnostics {
	var all Diagnostics
	for _, vm := range s.VMs {
		all = append(all, vm.Warnings...)
	}
	for _, inv := range s.Invalid {
		all = append(all, inv.Diagnostics...)
	}
	sortDiagnostics(all)
	return all
}

// Err returns nil when the root was read and every VM directory is
// valid. Otherwise it returns the error reading the root, or an error
// wrapping ErrInvalid and the Diagnostics (errors only) of every invalid
// directory, one per line.
func (s *Snapshot) Err() error {
	if s.RootErr != nil {
		return s.RootErr
	}
	if errs := s.Diagnostics().Errors(); len(errs) > 0 {
		return fmt.Errorf("%w:\n%w", ErrInvalid, errs)
	}
	return nil
}

// ignoreReason says why a root entry is not a VM directory, or "" when it
// may be one.
func ignoreReason(name string) string {
	switch {
	case strings.HasPrefix(name, "."):
		return "hidden"
	case strings.HasSuffix(name, "~"),
		strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#"),
		strings.HasSuffix(name, ".swp"), strings.HasSuffix(name, ".swx"), strings.HasSuffix(name, ".swo"),
		strings.HasSuffix(name, ".tmp"), strings.HasSuffix(name, ".bak"), strings.HasSuffix(name, ".orig"),
		strings.HasSuffix(name, ".rej"), strings.HasSuffix(name, ".old"),
		strings.HasSuffix(name, ".rpmnew"), strings.HasSuffix(name, ".rpmsave"),
		strings.Contains(name, ".dpkg-"), strings.Contains(name, ".pkgsave"), strings.Contains(name, ".pkgnew"):
		return "editor or package-manager leftover"
	}
	return ""
}

// scanRoot lists the root's VM directories (absolute paths), every
// sub-directory that is not ignored (a directory without a config file
// may get one later, so the watcher watches it) and the entries it
// ignores.
func scanRoot(root string, opts LoadOptions) (dirs, subdirs []string, ignored []Ignored, err error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("config root %s: %w", root, err)
	}
	ignore := func(p, reason string) {
		ignored = append(ignored, Ignored{Path: p, Reason: reason})
		opts.logf("config: ignoring %s: %s", p, reason)
	}
	for _, e := range entries {
		p := filepath.Join(root, e.Name())
		if r := ignoreReason(e.Name()); r != "" {
			ignore(p, r)
			continue
		}
		fi, err := os.Stat(p) // follows symlinks to directories
		if err != nil {
			ignore(p, "cannot stat: "+err.Error())
			continue
		}
		if !fi.IsDir() {
			ignore(p, "not a directory")
			continue
		}
		subdirs = append(subdirs, p)
		if _, err := os.Stat(filepath.Join(p, FileName)); err != nil {
			ignore(p, "no "+FileName+" file")
			continue
		}
		dirs = append(dirs, p)
	}
	return dirs, subdirs, ignored, nil
}

// dirResult is one directory's own load result, before cross-checks.
type dirResult struct {
	dir   string
	name  string
	vm    *VM
	diags Diagnostics
	// watch: directories of included files, outside the VM directory or
	// not, to be watched for changes.
	watch []string
	// includes and globs are the files the config included and the
	// .include patterns it used: with the config file itself, the only
	// files whose changes matter.
	includes, globs []string
	// complete is set when the config parsed far enough for includes and
	// globs to be the whole list.
	complete bool
}

// concerns reports whether a change to path can change this VM's config.
// Other files in the VM directory (a disk image, a hook, a log) need no
// reload: hooks are looked up when they run.
func (r *dirResult) concerns(path string) bool {
	if !r.complete || path == filepath.Join(r.dir, FileName) || path == r.dir {
		return true
	}
	for _, inc := range r.includes {
		if path == inc {
			return true
		}
	}
	for _, g := range r.globs {
		if ok, _ := filepath.Match(g, path); ok {
			return true
		}
	}
	return false
}

// LoadRoot loads every VM directory under root and runs the checks that
// span VMs: names unique across the root, depends naming known VMs and
// free of cycles. A VM failing a cross-check is moved to Invalid.
func LoadRoot(root string, opts LoadOptions) *Snapshot {
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	snap := &Snapshot{Root: abs, VMs: map[string]*VM{}, Invalid: map[string]*InvalidDir{}}
	dirs, _, ignored, err := scanRoot(abs, opts)
	if err != nil {
		snap.RootErr = err
		return snap
	}
	snap.Ignored = ignored
	results := loadDirs(dirs, opts)
	crossCheck(results, snap)
	return snap
}

// loadDirs loads directories in parallel; the result order follows dirs.
func loadDirs(dirs []string, opts LoadOptions) []*dirResult {
	ids := newIDCache()
	results := make([]*dirResult, len(dirs))
	workers := min(runtime.GOMAXPROCS(0)*2, len(dirs))
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = loadDir(dirs[i], opts, ids)
			}
		}()
	}
	for i := range dirs {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

// crossCheck sorts per-directory results into snap, applying the checks
// that involve several VMs.
func crossCheck(results []*dirResult, snap *Snapshot) {
	invalid := func(r *dirResult, d ...Diagnostic) {
		inv := snap.Invalid[r.dir]
		if inv == nil {
			inv = &InvalidDir{Dir: r.dir, Name: r.name, Diagnostics: append(Diagnostics(nil), r.diags...)}
			snap.Invalid[r.dir] = inv
		}
		inv.Diagnostics = append(inv.Diagnostics, d...)
		sortDiagnostics(inv.Diagnostics)
	}
	// Every directory claims its name, valid or not: a broken config
	// still owns its name, so a duplicate is reported either way.
	byName := map[string][]*dirResult{}
	for _, r := range results {
		byName[r.name] = append(byName[r.name], r)
	}
	for _, r := range results {
		if r.vm == nil {
			invalid(r)
		}
	}
	for name, rs := range byName {
		if len(rs) < 2 {
			continue
		}
		for _, r := range rs {
			var others []string
			for _, o := range rs {
				if o != r {
					others = append(others, o.dir)
				}
			}
			sort.Strings(others)
			invalid(r, Diagnostic{Pos: namePos(r), Key: "name", Severity: Error,
				Msg: fmt.Sprintf("VM name %s is also used by %s; VM names must be unique: rename one (name = ...)", name, strings.Join(others, ", "))})
		}
	}
	// depends: names must exist (valid or not) and form no cycle.
	valid := map[string]*dirResult{}
	for _, r := range results {
		if r.vm != nil && len(byName[r.name]) == 1 {
			valid[r.name] = r
		}
	}
	for _, r := range valid {
		for _, dep := range r.vm.Depends {
			if _, ok := byName[dep]; !ok {
				msg := fmt.Sprintf("no VM named %s in %s", dep, snap.Root)
				if s := suggest(dep, sortedKeys(byName)); s != "" {
					msg += "; did you mean " + s + "?"
				}
				invalid(r, Diagnostic{Pos: depPos(r), Key: "depends", Severity: Error, Msg: msg})
			}
		}
	}
	for _, cycle := range findCycles(valid) {
		text := strings.Join(append(cycle, cycle[0]), " -> ")
		for _, name := range cycle {
			r := valid[name]
			invalid(r, Diagnostic{Pos: depPos(r), Key: "depends", Severity: Error,
				Msg: "dependency cycle " + text + "; break it by removing one of these depends"})
		}
	}
	for name, r := range valid {
		if _, bad := snap.Invalid[r.dir]; !bad {
			snap.VMs[name] = r.vm
		}
	}
}

func namePos(r *dirResult) ucl.Pos {
	if r.vm != nil {
		if r.vm.set["name"] {
			return r.vm.positions["name"]
		}
	}
	return ucl.Pos{File: filepath.Join(r.dir, FileName), Line: 1, Col: 1}
}

func depPos(r *dirResult) ucl.Pos {
	if p, ok := r.vm.positions["depends"]; ok {
		return p
	}
	return ucl.Pos{File: r.vm.File, Line: 1, Col: 1}
}

// findCycles returns each dependency cycle once, as the list of names in
// it, starting with the smallest name.
func findCycles(vms map[string]*dirResult) [][]string {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var cycles [][]string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		for _, dep := range vms[n].vm.Depends {
			if _, ok := vms[dep]; !ok {
				continue
			}
			switch color[dep] {
			case white:
				visit(dep)
			case grey:
				i := len(stack) - 1
				for stack[i] != dep {
					i--
				}
				cycle := append([]string(nil), stack[i:]...)
				// Rotate to start at the smallest name, for a stable
				// text and to report each cycle once.
				minI := 0
				for j := range cycle {
					if cycle[j] < cycle[minI] {
						minI = j
					}
				}
				cycle = append(cycle[minI:], cycle[:minI]...)
				if k := strings.Join(cycle, " "); !seen[k] {
					seen[k] = true
					cycles = append(cycles, cycle)
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
	}
	for _, n := range sortedKeys(vms) {
		if color[n] == white {
			visit(n)
		}
	}
	return cycles
}
