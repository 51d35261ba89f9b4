// Package tests holds vmstated's end-to-end tests: they build the vmstated
// and vmstatedctl binaries, run the daemon on temporary config roots with
// real hook scripts and real VM processes (the exec driver, and QEMU when
// qemu-system-x86_64 is installed), and drive it through its control
// socket. Run them with go test ./tests/.
package tests
