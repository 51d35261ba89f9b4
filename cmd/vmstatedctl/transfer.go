package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/savefile"
)

// cmdSend writes a VM's saved guest to standard output: a running (or
// paused) VM is suspended first, then its save file is streamed, and only
// once the whole stream is out is the VM stopped here (its saved guest
// dropped). A send cut short leaves it suspended: 'start' resumes it on
// this host.
func cmdSend(e *env, args []string) error {
	fs := e.newFlags("send")
	pos, err := e.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	if f, ok := e.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return usagef("send writes a binary stream: redirect standard output to a file or a pipe (vmstatedctl send %s | ssh host vmstatedctl receive %s)", name, name)
	}
	// A reader that goes away early (| head, a dropped ssh) must get the
	// message below, saying where the guest is, not a silent death by
	// SIGPIPE: writes to a closed pipe fail with EPIPE instead.
	signal.Ignore(syscall.SIGPIPE)
	c := e.client()
	st, err := c.Get(e.ctx, name)
	if err != nil {
		return err
	}
	// Progress goes to standard error: standard output is the stream.
	quiet := *e
	quiet.stdout = e.stderr
	if st.State == api.StateRunning || st.State == api.StatePaused {
		if _, err := quiet.waitFor(name, goal{target: api.StateSuspended}, func() error {
			_, err := c.Suspend(e.ctx, name, api.SuspendOptions{})
			return err
		}); err != nil {
			return err
		}
	}
	body, err := c.Saved(e.ctx, name)
	if err != nil {
		return err
	}
	defer body.Close()
	check := savefile.NewVerifier(io.Discard)
	n, err := io.Copy(e.stdout, io.TeeReader(body, check))
	if err == nil {
		err = check.Check()
	}
	if err == nil {
		if f, ok := e.stdout.(*os.File); ok {
			if serr := f.Sync(); serr != nil && !isNotSyncable(serr) {
				err = serr
			}
		}
	}
	if err != nil {
		return fmt.Errorf("send %s: %v after %d bytes; %s stays suspended here: 'vmstatedctl start %s' resumes it", name, err, n, name, name)
	}
	if _, err := c.Do(e.ctx, name, api.ActionDiscard, nil); err != nil {
		return fmt.Errorf("%s was sent whole (%d bytes), but its saved guest here could not be dropped: %w", name, n, err)
	}
	fmt.Fprintf(e.stderr, "%s: sent %.1f MiB; stopped here\n", name, float64(n)/(1<<20))
	return nil
}

// isNotSyncable reports an fsync refused because standard output is a
// pipe or a socket, which holds nothing to flush.
func isNotSyncable(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EROFS)
}

// cmdReceive reads a stream that send wrote from standard input into the
// stopped VM of the same name and waits until the VM runs from it.
func cmdReceive(e *env, args []string) error {
	fs := e.newFlags("receive")
	pos, err := e.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	if term.IsTerminal(int(os.Stdin.Fd())) {
		return usagef("receive reads a stream from standard input: vmstatedctl receive %s < file, or ssh host vmstatedctl send %s | vmstatedctl receive %s", name, name, name)
	}
	st, err := e.waitFor(name, goal{target: api.StateRunning}, func() error {
		_, err := e.client().Receive(e.ctx, name, os.Stdin)
		return err
	})
	return e.waited(st, err)
}
