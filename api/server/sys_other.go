//go:build !unix

package server

import "net"

func descriptorLimit() uint64 { return fallbackDescriptorLimit }

// readPending cannot look without waiting here; it says nothing came.
func readPending(net.Conn, []byte) int { return 0 }
