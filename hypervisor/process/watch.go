package process

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// One inotify (or kqueue) instance serves every Follower of the process.
// Linux allows 128 inotify instances per user by default, fewer than the
// VMs a host may run, and closing an instance makes the kernel wait for a
// grace period (10 ms or more). Watches are per directory and counted;
// events are passed on by file path.
var files = &fileWatch{dirs: map[string]int{}, subs: map[string]map[*Follower]struct{}{}}

type fileWatch struct {
	mu      sync.Mutex
	watcher *fsnotify.Watcher
	dirs    map[string]int                    // watched directory -> followers
	subs    map[string]map[*Follower]struct{} // file path -> its followers
}

// subscribe arranges for fl to be woken whenever something happens to the
// file at path, which must be absolute and clean.
func (fw *fileWatch) subscribe(path string, fl *Follower) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.watcher == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			return fmt.Errorf("watch files: %w", err)
		}
		fw.watcher = w
		go fw.dispatch(w)
	}
	dir := filepath.Dir(path)
	// Add even when the directory is watched already: the kernel drops
	// the watch of a directory that was removed, and Add of a watched
	// directory is harmless.
	if err := fw.watcher.Add(dir); err != nil {
		return fmt.Errorf("watch directory %s (does it exist?): %w", dir, err)
	}
	fw.dirs[dir]++
	if fw.subs[path] == nil {
		fw.subs[path] = map[*Follower]struct{}{}
	}
	fw.subs[path][fl] = struct{}{}
	return nil
}

func (fw *fileWatch) unsubscribe(path string, fl *Follower) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	delete(fw.subs[path], fl)
	if len(fw.subs[path]) == 0 {
		delete(fw.subs, path)
	}
	dir := filepath.Dir(path)
	fw.dirs[dir]--
	if fw.dirs[dir] <= 0 {
		delete(fw.dirs, dir)
		_ = fw.watcher.Remove(dir) // fails if the kernel dropped it already
	}
}

func (fw *fileWatch) dispatch(w *fsnotify.Watcher) {
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			fw.mu.Lock()
			for fl := range fw.subs[filepath.Clean(ev.Name)] {
				fl.wake()
			}
			fw.mu.Unlock()
		case _, ok := <-w.Errors:
			if !ok {
				return
			}
			// Events may have been lost (queue overflow): wake everyone
			// to catch up with their files.
			fw.mu.Lock()
			for _, m := range fw.subs {
				for fl := range m {
					fl.wake()
				}
			}
			fw.mu.Unlock()
		}
	}
}
