package supervisor

import (
	"bytes"
	"io"
)

// sourceConsole tags the lines a guest wrote to its serial console.
const sourceConsole = "console"

// consoleOutput is where a VM's driver copies the guest's serial console:
// the VM log, one line per guest line.
func (v *vm) consoleOutput() io.Writer {
	return crlfWriter{v.log.Writer(sourceConsole)}
}

// crlfWriter drops the carriage return a terminal line ends with, which
// would otherwise end up in the log file.
type crlfWriter struct{ w io.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	line := p
	if n := len(line); n >= 2 && line[n-1] == '\n' {
		line = bytes.TrimRight(line[:n-1], "\r")
		line = append(line[:len(line):len(line)], '\n')
	}
	if _, err := c.w.Write(line); err != nil {
		return 0, err
	}
	return len(p), nil
}
