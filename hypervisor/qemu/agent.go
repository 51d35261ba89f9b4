package qemu

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/qemu/qga"
)

// agentTimeout bounds one exchange with the guest agent when the caller
// gives no shorter deadline: a live agent answers in milliseconds, an
// absent one never.
const agentTimeout = 5 * time.Second

// agentSlot holds the right to use the agent's socket, which QEMU serves
// to one client at a time (a second one would wait unanswered).
type agentSlot chan struct{}

// HasGuestAgent reports whether QEMU was started with the agent's port.
func (i *instance) HasGuestAgent() bool { return i.sockets["qga"] != "" }

// withAgent runs fn on a fresh, synchronised connection to the agent.
func (i *instance) withAgent(ctx context.Context, fn func(context.Context, *qga.Client) error) error {
	sock := i.sockets["qga"]
	if sock == "" {
		return fmt.Errorf("%w: vm %s has no guest agent channel: set guest_agent = true in its qemu section and restart it", hypervisor.ErrNotSupported, i.spec.Name)
	}
	select {
	case <-i.done:
		return hypervisor.ErrExited
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	select {
	case i.agent <- struct{}{}:
		defer func() { <-i.agent }()
	case <-ctx.Done():
		return fmt.Errorf("qemu: the guest agent is busy: %w", ctx.Err())
	}
	c, err := qga.Dial(ctx, sock)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(ctx, c)
}

// GuestInterfaces asks the agent for the guest's network interfaces.
func (i *instance) GuestInterfaces(ctx context.Context) ([]hypervisor.GuestInterface, error) {
	var out []hypervisor.GuestInterface
	err := i.withAgent(ctx, func(ctx context.Context, c *qga.Client) error {
		ifs, err := c.Interfaces(ctx)
		for _, f := range ifs {
			out = append(out, hypervisor.GuestInterface{Name: f.Name, MAC: f.MAC, Addresses: f.Addresses})
		}
		return err
	})
	return out, err
}

// GuestDetails asks the agent for the guest's host name and OS. Parts
// the agent cannot tell are left empty.
func (i *instance) GuestDetails(ctx context.Context) (hypervisor.GuestDetails, error) {
	var d hypervisor.GuestDetails
	err := i.withAgent(ctx, func(ctx context.Context, c *qga.Client) error {
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		d.AgentVersion = info.Version
		var errs []error
		if d.Hostname, err = c.Hostname(ctx); err != nil {
			errs = append(errs, err)
		}
		if info.Supports("guest-get-osinfo") {
			o, err := c.OSInfo(ctx)
			if err != nil {
				errs = append(errs, err)
			}
			d.OS, d.Kernel = o.PrettyName, o.KernelRelease
			if d.OS == "" {
				d.OS = o.Name
			}
		}
		return errors.Join(errs...)
	})
	return d, err
}

// agentShutdown asks the agent to power the guest off.
func (i *instance) agentShutdown(ctx context.Context) error {
	return i.withAgent(ctx, func(ctx context.Context, c *qga.Client) error { return c.Shutdown(ctx) })
}

var _ hypervisor.GuestAgent = (*instance)(nil)
