package ucl

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// MaxFileSize is the largest file the default reader reads (the top file
// of ParseFile and every .include when Options.ReadFile is nil). A caller
// with its own rules for files supplies Options.ReadFile.
const MaxFileSize = 16 << 20

// readRegular is the default file reader: regular files only, opened
// without blocking so that a FIFO cannot hang the parser, and read no
// further than MaxFileSize so that /dev/zero or a huge file cannot exhaust
// memory.
func readRegular(name string) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", name, fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, MaxFileSize)
	}
	return data, nil
}
