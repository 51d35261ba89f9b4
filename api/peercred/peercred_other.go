//go:build !linux && !freebsd

package peercred

import "fmt"

func fromFD(int) (Cred, error) {
	return Cred{}, fmt.Errorf("%w on this system", ErrUnsupported)
}

func groupsOf(Cred) []uint32 { return nil }
