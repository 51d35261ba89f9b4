package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ChangeKind says what happened to a VM's config.
type ChangeKind uint8

const (
	// Added: a new valid VM.
	Added ChangeKind = iota + 1
	// Changed: a VM's config changed; Change.VM is the new one. Also sent
	// when a config that was reported Invalid is valid again, even if
	// its content equals the config in force, so the error can be
	// cleared.
	Changed
	// Removed: the VM's directory or config file is gone. Change.VM is
	// the last config in force.
	Removed
	// Invalid: the VM's config has errors (Change.Diagnostics). The
	// previous config, if any, stays in force and is Change.VM.
	Invalid
	// Scanned ends the changes of a full scan asked for by Request:
	// every change that scan found came before it. Change.Scan is the
	// highest request number it answers, Change.Err why the root could
	// not be read (nothing changed then).
	Scanned
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Changed:
		return "changed"
	case Removed:
		return "removed"
	case Invalid:
		return "invalid"
	case Scanned:
		return "scanned"
	}
	return fmt.Sprintf("ChangeKind(%d)", uint8(k))
}

// Change is one VM's config change.
type Change struct {
	Kind ChangeKind
	Name string
	Dir  string
	// VM: the new config (Added, Changed), the last one (Removed), the one
	// still in force or nil (Invalid).
	VM *VM
	// Diagnostics: the errors and warnings (Invalid), or the warnings
	// (Added, Changed).
	Diagnostics Diagnostics
	// Scan and Err: see Scanned.
	Scan uint64
	Err  error
}

func (c Change) String() string {
	return fmt.Sprintf("%s %s (%s)", c.Kind, c.Name, c.Dir)
}

// WatchOptions tune a Watcher.
type WatchOptions struct {
	LoadOptions
	// Debounce is how long a VM directory must stay quiet after an event
	// before it is reloaded, so that an editor's several writes make one
	// change. Zero means 250 ms. A directory that never stays quiet is
	// reloaded after 20 times this.
	Debounce time.Duration
}

const defaultDebounce = 250 * time.Millisecond

// Watcher follows a config root and reports per-VM changes. Create it
// with NewWatcher, read Initial, then call Run and read Changes.
//
// It watches directories, never files: the root, every VM directory, and
// the directories of files that configs .include (so an edited template
// reloads the VMs that use it). Editors that write a temporary file and
// rename it over config are thus seen like any other write.
type Watcher struct {
	root     string
	opts     WatchOptions
	debounce time.Duration
	fsw      *fsnotify.Watcher
	changes  chan Change
	rescan   chan struct{}

	mu   sync.Mutex
	snap *Snapshot
	// lastReq numbers the requests made through Request; asked is the
	// highest one no scan has answered yet (0: none).
	lastReq, asked uint64

	// Owned by NewWatcher, then by Run.
	results  map[string]*dirResult // VM directories with a config, by dir
	inForce  map[string]*VM        // by name
	reported map[string]string     // dir -> text of the last Invalid report
	invalid  map[string]bool       // names last reported Invalid
	watched  map[string]bool       // directories with an fsnotify watch
	includes map[string][]string   // watched include dir -> VM dirs
	pending  map[string]*pendingDir
}

type pendingDir struct {
	first, last time.Time
}

// NewWatcher starts watching root and loads it. The load's result is
// Initial(); Run then reports changes relative to it. An error means the
// root cannot be watched or read.
func NewWatcher(root string, opts WatchOptions) (*Watcher, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("config root %s: %w", root, err)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching config root %s: %w", abs, err)
	}
	w := &Watcher{
		root:     abs,
		opts:     opts,
		debounce: opts.Debounce,
		fsw:      fsw,
		changes:  make(chan Change, 64),
		rescan:   make(chan struct{}, 1),
		results:  map[string]*dirResult{},
		inForce:  map[string]*VM{},
		reported: map[string]string{},
		invalid:  map[string]bool{},
		watched:  map[string]bool{},
		includes: map[string][]string{},
		pending:  map[string]*pendingDir{},
	}
	if w.debounce <= 0 {
		w.debounce = defaultDebounce
	}
	if err := fsw.Add(abs); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("watching config root %s: %w", abs, err)
	}
	w.watched[abs] = true
	snap, err := w.fullScan()
	if err != nil {
		fsw.Close()
		return nil, err
	}
	// The initial state is what Run compares against.
	for name, vm := range snap.VMs {
		w.inForce[name] = vm
	}
	for dir, inv := range snap.Invalid {
		w.reported[dir] = inv.Diagnostics.Error()
	}
	w.setSnapshot(snap)
	return w, nil
}

// Initial returns the snapshot loaded by NewWatcher.
func (w *Watcher) Initial() *Snapshot { return w.Snapshot() }

// Snapshot returns the result of the latest load of the whole root
// (valid and invalid directories as they are on disk now; an invalid
// directory's previous config is not in it).
func (w *Watcher) Snapshot() *Snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.snap
}

func (w *Watcher) setSnapshot(s *Snapshot) {
	w.mu.Lock()
	w.snap = s
	w.mu.Unlock()
}

// Changes delivers the changes found by Run. It is closed when Run returns.
func (w *Watcher) Changes() <-chan Change { return w.changes }

// Rescan asks Run to reload the whole root (SIGHUP, an API reload). It
// does not block; requests made while one is pending are merged.
func (w *Watcher) Rescan() {
	select {
	case w.rescan <- struct{}{}:
	default:
	}
}

// Request asks Run to reload the whole root, like Rescan, and returns the
// request's number: a Scanned change with a Scan at least that high
// follows the changes the scan found. Requests made while one is pending
// are answered by the same scan.
func (w *Watcher) Request() uint64 {
	w.mu.Lock()
	w.lastReq++
	n := w.lastReq
	w.asked = n
	w.mu.Unlock()
	w.Rescan()
	return n
}

// Run watches until ctx ends, then returns nil; it returns an error only
// when the watcher itself fails. Changes is closed when it returns. Run
// may be called once.
func (w *Watcher) Run(ctx context.Context) error {
	defer close(w.changes)
	defer w.fsw.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return errors.New("config watcher: event channel closed")
			}
			w.event(ev)
		case werr, ok := <-w.fsw.Errors:
			if !ok {
				return errors.New("config watcher: error channel closed")
			}
			// On overflow events were lost; on any other error we
			// cannot tell what was missed. Either way, look at
			// everything again.
			w.opts.logf("config: watcher: %v; rescanning %s", werr, w.root)
			err = w.full(ctx)
		case <-w.rescan:
			w.opts.logf("config: rescanning %s", w.root)
			w.mu.Lock()
			answers := w.asked
			w.asked = 0
			w.mu.Unlock()
			var scanErr error
			scanErr, err = w.fullScanReport(ctx)
			if err == nil && answers > 0 {
				err = w.send(ctx, Change{Kind: Scanned, Scan: answers, Err: scanErr})
			}
		case <-timer.C:
			err = w.processDue(ctx, time.Now())
		}
		if err != nil {
			return nil // ctx ended while sending
		}
		if next, ok := w.nextDeadline(); ok {
			timer.Reset(max(time.Until(next), time.Millisecond))
		}
	}
}

// event schedules the directories an event may concern.
func (w *Watcher) event(ev fsnotify.Event) {
	p := filepath.Clean(ev.Name)
	dir := filepath.Dir(p)
	for _, vmDir := range w.includes[dir] {
		if r := w.results[vmDir]; r == nil || r.concerns(p) {
			w.schedule(vmDir)
		}
	}
	switch {
	case p == w.root:
		// The root itself was removed or renamed: keep every config in
		// force (nothing running is touched) and look again.
		w.opts.logf("config: root %s: %s; rescanning", w.root, ev.Op)
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			// The watch went with it; the rescan adds it again if the
			// root is back.
			_ = w.fsw.Remove(w.root)
			delete(w.watched, w.root)
		}
		w.Rescan()
	case dir == w.root:
		if r := ignoreReason(filepath.Base(p)); r != "" {
			w.opts.logf("config: ignoring %s: %s", p, r)
			return
		}
		w.schedule(p)
	case filepath.Dir(dir) == w.root && w.watched[dir]:
		if r := w.results[dir]; r != nil && !r.concerns(p) {
			return // a disk image, a hook, a log: not the config
		}
		w.schedule(dir)
	}
}

func (w *Watcher) schedule(dir string) {
	now := time.Now()
	if p := w.pending[dir]; p != nil {
		p.last = now
		return
	}
	w.pending[dir] = &pendingDir{first: now, last: now}
}

func (w *Watcher) deadline(p *pendingDir) time.Time {
	quiet := p.last.Add(w.debounce)
	if limit := p.first.Add(20 * w.debounce); limit.Before(quiet) {
		return limit
	}
	return quiet
}

func (w *Watcher) nextDeadline() (time.Time, bool) {
	var next time.Time
	for _, p := range w.pending {
		if d := w.deadline(p); next.IsZero() || d.Before(next) {
			next = d
		}
	}
	return next, !next.IsZero()
}

// processDue reloads the directories whose quiet time has passed.
func (w *Watcher) processDue(ctx context.Context, now time.Time) error {
	var due []string
	for dir, p := range w.pending {
		if !w.deadline(p).After(now) {
			due = append(due, dir)
		}
	}
	if len(due) == 0 {
		return nil
	}
	sort.Strings(due)
	ids := newIDCache()
	for _, dir := range due {
		if w.settling(dir, now) {
			continue
		}
		delete(w.pending, dir)
		w.reloadDir(dir, ids)
	}
	return w.emit(ctx)
}

// settling reports whether dir's config (or, without one, the directory)
// was modified less than the debounce time ago, and if so postpones its
// reload. Writes made before
// the directory was watched cause no events, and a file may be read
// between its creation and its first write; its modification time tells.
// The postponement is bounded like the debounce itself.
func (w *Watcher) settling(dir string, now time.Time) bool {
	p := w.pending[dir]
	if p == nil {
		return false
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		// No config (yet): an editor may have renamed it away to
		// write a new one. The directory's time tells whether
		// entries are still coming and going.
		if fi, err = os.Stat(dir); err != nil {
			return false
		}
	}
	mt := fi.ModTime()
	if now.Sub(mt) >= w.debounce || mt.After(now) || !mt.After(p.last) {
		return false
	}
	if now.Sub(p.first) >= 20*w.debounce {
		return false
	}
	p.last = mt
	return true
}

// reloadDir brings one root entry's state up to date.
func (w *Watcher) reloadDir(dir string, ids *idCache) {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		if w.watched[dir] {
			_ = w.fsw.Remove(dir) // fails when the directory is gone; nothing to do
			delete(w.watched, dir)
		}
		delete(w.results, dir)
		return
	}
	w.watch(dir)
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		if _, had := w.results[dir]; had || !errors.Is(err, os.ErrNotExist) {
			w.opts.logf("config: %s: no %s file (%v)", dir, FileName, err)
		}
		delete(w.results, dir)
		return
	}
	w.results[dir] = loadDir(dir, w.opts.LoadOptions, ids)
}

func (w *Watcher) watch(dir string) {
	if w.watched[dir] {
		return
	}
	w.addWatch(dir)
}

// addWatch adds a watch even when one is recorded: adding again is
// harmless, and after an overflow or error it restores a watch that was
// lost.
func (w *Watcher) addWatch(dir string) {
	if err := w.fsw.Add(dir); err != nil {
		w.opts.logf("config: cannot watch %s: %v (changes there are seen on rescan only)", dir, err)
		return
	}
	w.watched[dir] = true
}

// fullScan reloads every directory of the root, adding watches for new
// ones and dropping those of vanished ones, and returns the snapshot.
func (w *Watcher) fullScan() (*Snapshot, error) {
	dirs, subdirs, ignored, err := scanRoot(w.root, w.opts.LoadOptions)
	if err != nil {
		return nil, err
	}
	w.addWatch(w.root)
	keep := map[string]bool{w.root: true}
	for _, d := range subdirs {
		w.addWatch(d)
		keep[d] = true
	}
	results := loadDirs(dirs, w.opts.LoadOptions)
	w.results = map[string]*dirResult{}
	for _, r := range results {
		w.results[r.dir] = r
	}
	for dir := range w.watched {
		if !keep[dir] && filepath.Dir(dir) == w.root {
			_ = w.fsw.Remove(dir)
			delete(w.watched, dir)
		}
	}
	// Whatever was pending is covered by this load.
	clear(w.pending)
	snap := w.check()
	snap.Ignored = ignored
	return snap, nil
}

// full rescans and reports. A root that cannot be read changes nothing:
// configs in force stay so.
func (w *Watcher) full(ctx context.Context) error {
	_, err := w.fullScanReport(ctx)
	return err
}

// fullScanReport is full that also returns why the root could not be
// read.
func (w *Watcher) fullScanReport(ctx context.Context) (scanErr, sendErr error) {
	snap, err := w.fullScan()
	if err != nil {
		w.opts.logf("config: rescan: %v; keeping the configs in force", err)
		return err, nil
	}
	return nil, w.report(ctx, snap)
}

func (w *Watcher) send(ctx context.Context, c Change) error {
	select {
	case w.changes <- c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// check runs the cross-VM checks over the current results and refreshes
// the include-directory watches.
func (w *Watcher) check() *Snapshot {
	results := make([]*dirResult, 0, len(w.results))
	for _, dir := range sortedKeys(w.results) {
		results = append(results, w.results[dir])
	}
	snap := &Snapshot{Root: w.root, VMs: map[string]*VM{}, Invalid: map[string]*InvalidDir{}}
	crossCheck(results, snap)
	w.updateIncludes(results)
	return snap
}

func (w *Watcher) updateIncludes(results []*dirResult) {
	want := map[string][]string{}
	for _, r := range results {
		for _, inc := range r.watch {
			if inc == r.dir {
				continue // the VM directory is watched anyway
			}
			want[inc] = append(want[inc], r.dir)
		}
	}
	for dir := range w.includes {
		if _, ok := want[dir]; !ok && dir != w.root && filepath.Dir(dir) != w.root {
			_ = w.fsw.Remove(dir)
			delete(w.watched, dir)
		}
	}
	for dir := range want {
		w.watch(dir)
	}
	w.includes = want
}

func (w *Watcher) emit(ctx context.Context) error {
	return w.report(ctx, w.check())
}

// report compares a new snapshot with the configs in force and sends the
// differences.
func (w *Watcher) report(ctx context.Context, snap *Snapshot) error {
	w.setSnapshot(snap)
	var out []Change
	// Which names do invalid directories claim?
	invalidByName := map[string]*InvalidDir{}
	for _, inv := range snap.Invalid {
		invalidByName[inv.Name] = inv
	}
	for _, name := range sortedKeys(w.inForce) {
		old := w.inForce[name]
		if _, ok := snap.VMs[name]; ok {
			continue
		}
		inv := snap.Invalid[old.Dir]
		if inv == nil {
			inv = invalidByName[name]
		}
		if inv != nil {
			// Broken: the config in force stays.
			if text := inv.Diagnostics.Error(); w.reported[inv.Dir] != text {
				w.reported[inv.Dir] = text
				w.invalid[name] = true
				out = append(out, Change{Kind: Invalid, Name: name, Dir: inv.Dir, VM: old, Diagnostics: inv.Diagnostics})
			}
			continue
		}
		delete(w.inForce, name)
		delete(w.invalid, name)
		delete(w.reported, old.Dir)
		out = append(out, Change{Kind: Removed, Name: name, Dir: old.Dir, VM: old})
	}
	for _, name := range sortedKeys(snap.VMs) {
		vm := snap.VMs[name]
		old := w.inForce[name]
		delete(w.reported, vm.Dir)
		switch {
		case old == nil:
			out = append(out, Change{Kind: Added, Name: name, Dir: vm.Dir, VM: vm, Diagnostics: vm.Warnings})
		case old.Digest != vm.Digest || old.Dir != vm.Dir || w.invalid[name]:
			out = append(out, Change{Kind: Changed, Name: name, Dir: vm.Dir, VM: vm, Diagnostics: vm.Warnings})
		}
		w.inForce[name] = vm
		delete(w.invalid, name)
	}
	// Broken directories with no config in force: new VMs that do not
	// load yet.
	inForceDirs := map[string]bool{}
	for _, vm := range w.inForce {
		inForceDirs[vm.Dir] = true
	}
	for _, dir := range sortedKeys(snap.Invalid) {
		inv := snap.Invalid[dir]
		if inForceDirs[dir] {
			continue
		}
		if text := inv.Diagnostics.Error(); w.reported[dir] != text {
			w.reported[dir] = text
			out = append(out, Change{Kind: Invalid, Name: inv.Name, Dir: dir, Diagnostics: inv.Diagnostics})
		}
	}
	// Forget reports about directories that are gone.
	for dir := range w.reported {
		if _, ok := snap.Invalid[dir]; !ok {
			delete(w.reported, dir)
		}
	}
	for _, c := range out {
		w.opts.logf("config: %s", c)
		if err := w.send(ctx, c); err != nil {
			return err
		}
	}
	return nil
}
