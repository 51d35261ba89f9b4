//go:build !linux

package process

import (
	"errors"
	"os/exec"
)

// traceGate exists on Linux only; elsewhere every gate is a pipe gate.
type traceGate struct{}

func newTraceGate() (*traceGate, bool)         { return nil, false }
func (g *traceGate) start(cmd *exec.Cmd) error { return errTraceRefused }
func (g *traceGate) open() error               { return nil }
func (g *traceGate) drop()                     {}
func (g *traceGate) attach(*Process)           {}

var errTraceRefused = errors.New("tracing a process at its start is used on Linux only")

func tracingRefused() {}
