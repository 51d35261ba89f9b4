package qemu

import "golang.org/x/sys/unix"

// kvmGetAPIVersion is the KVM_GET_API_VERSION ioctl, _IO(0xAE, 0x00).
const kvmGetAPIVersion = 0xAE00

// kvmAPIVersion is the only API version KVM has ever reported.
const kvmAPIVersion = 12

// KVMUsable reports whether /dev/kvm can be opened read-write and answers
// KVM_GET_API_VERSION with the stable API version. accel = auto picks kvm
// only then.
func KVMUsable() bool {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion)
	return err == nil && v == kvmAPIVersion
}
