//go:build !linux

package main

// renameNoReplace moves from to to, failing with os.ErrExist if to
// exists (checked just before: this system has no atomic variant).
func renameNoReplace(from, to string) error { return renameChecked(from, to) }
