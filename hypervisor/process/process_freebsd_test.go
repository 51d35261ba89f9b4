//go:build freebsd

package process

// attachedStatusUnknown: kqueue reports the exit status of any process.
func attachedStatusUnknown() string { return "" }
