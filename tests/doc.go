// Package tests holds vmstated's end-to-end tests: they build the vmstated
// and vmstatedctl binaries, run the daemon on temporary config roots with
// real hook scripts and real VM processes (the exec driver, and QEMU when
// qemu-system-x86_64 is installed), and drive it through its control
// socket and its signals.
//
// Every test has its own config root, log, state and runtime directories
// and its own daemon. One hook script (testdata/hook.sh) serves every state
// of every VM: it records each call and its environment in a work
// directory next to the config root, and control files there make it fail
// or block.
//
// Every path the daemon uses is given by a flag (-c -l -S -s -p -R), so
// nothing lands in the system's directories; VM names still end in a
// suffix unique to the run, and a test fails if a VM's runtime directory
// appears in the default place. The
// tests kill every process they leave behind, found by working directory.
// Under -race the binaries are built with the race detector, and a race
// report from the daemon fails the test.
package tests
