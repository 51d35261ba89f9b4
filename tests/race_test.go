//go:build linux && race

package tests

func init() { raceBuild = true }
