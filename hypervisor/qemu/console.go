package qemu

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/vmstated/vmstated/hypervisor"
)

// Console connects to the guest's serial console (the socket QEMU serves
// one client at a time).
func (i *instance) Console(ctx context.Context) (io.ReadWriteCloser, error) {
	path := i.sockets["serial"]
	if path == "" {
		return nil, fmt.Errorf("%w: vm %s has no serial console: remove serial = false from its qemu section and restart it", hypervisor.ErrNotSupported, i.spec.Name)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qemu: connecting to the serial console: %w", err)
	}
	return c, nil
}

// VNCRelay is the VNC socket the daemon relays to TCP (vnc = auto) and
// the address to listen on.
func (i *instance) VNCRelay() (socket, host string) {
	if o, _ := options(i.spec); o.VNC == "auto" {
		return i.sockets["vnc"], o.VNCListen
	}
	return "", ""
}
