//go:build !linux

package process

import (
	"errors"
	"os"
)

// punchHole is not available here: followed files keep their bytes until
// TruncateCopied empties them.
func punchHole(f *os.File, off, n int64) error { return errors.ErrUnsupported }
