//go:build !linux

package qemu

// KVMUsable reports whether KVM can be used; it never can off Linux.
func KVMUsable() bool { return false }
