package hypervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmstated/vmstated/atomicfile"
)

// HandleFile is the name, inside an instance's RunDir, of the file holding
// its Handle. Drivers write it as soon as the process exists, before Start
// returns: a daemon that dies between the launch and saving the handle in
// its own records finds the process through this file instead of
// launching a second one and leaving the first orphaned.
const HandleFile = "handle.json"

// WriteHandleFile stores h in h.RunDir/HandleFile, replaced atomically
// (atomicfile.Overwrite: the daemon that wrote it is its only reader while
// it runs).
func WriteHandleFile(h Handle) error {
	if h.RunDir == "" {
		return fmt.Errorf("handle of pid %d has no run directory", h.PID)
	}
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return atomicfile.Overwrite(filepath.Join(h.RunDir, HandleFile), append(data, '\n'), atomicfile.Options{})
}

// RemoveHandleFile removes the handle in runDir, once it names nothing (a
// launch that did not happen, or one that was ended). A missing file is
// not an error.
func RemoveHandleFile(runDir string) error {
	err := os.Remove(filepath.Join(runDir, HandleFile))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

// ReadHandleFile reads the handle a driver left in runDir.
func ReadHandleFile(runDir string) (Handle, error) {
	var h Handle
	data, err := os.ReadFile(filepath.Join(runDir, HandleFile))
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("%s: %w", filepath.Join(runDir, HandleFile), err)
	}
	return h, nil
}
