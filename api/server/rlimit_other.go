//go:build !unix

package server

func descriptorLimit() uint64 { return fallbackDescriptorLimit }
