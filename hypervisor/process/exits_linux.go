//go:build linux

package process

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// exits waits for the exits of every watched process with one goroutine:
// each process's pidfd (readable once the process has died) is registered
// in one epoll instance, and that instance, itself pollable, waits in the
// runtime's poller. A host with a thousand VMs then has no goroutine, and
// no thread, per VM parked on its exit, and nothing polls while they run.
var exits exitPoller

type exitPoller struct {
	once sync.Once
	err  error
	epfd int
	ep   *os.File // epfd for the runtime's poller; kept so it is never finalized

	mu  sync.Mutex
	fns map[int32]func() // pidfd -> what to run once its process is gone
}

// add runs fn in a goroutine of its own once the process behind pidfd has
// exited. The caller keeps pidfd open until then and closes it (if it
// wants to) only once fn runs.
func (e *exitPoller) add(pidfd int, fn func()) error {
	e.once.Do(e.start)
	if e.err != nil {
		return e.err
	}
	e.mu.Lock()
	e.fns[int32(pidfd)] = fn
	e.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(pidfd)}
	if err := unix.EpollCtl(e.epfd, unix.EPOLL_CTL_ADD, pidfd, &ev); err != nil {
		e.mu.Lock()
		delete(e.fns, int32(pidfd))
		e.mu.Unlock()
		return fmt.Errorf("watch process exits: epoll_ctl: %w", err)
	}
	return nil
}

func (e *exitPoller) start() {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		e.err = fmt.Errorf("watch process exits: epoll_create1: %w", err)
		return
	}
	// Non-blocking, so that os.NewFile hands it to the runtime's poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		e.err = fmt.Errorf("watch process exits: %w", err)
		return
	}
	e.epfd = fd
	e.ep = os.NewFile(uintptr(fd), "epoll:process-exits")
	e.fns = map[int32]func(){}
	go e.run()
}

// run collects exits for the daemon's lifetime.
func (e *exitPoller) run() {
	events := make([]unix.EpollEvent, 64)
	// collect takes every exit that is ready; returning false makes the
	// runtime park this goroutine until the epoll instance is readable
	// again.
	collect := func(fd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(fd), events, 0)
			if err == unix.EINTR {
				continue
			}
			if n <= 0 {
				return false
			}
			e.dispatch(int(fd), events[:n])
		}
	}
	rc, err := e.ep.SyscallConn()
	if err == nil {
		err = rc.Read(collect)
	}
	// Only when the runtime cannot poll the epoll instance: block this
	// one thread (for all processes) in epoll_wait instead.
	_ = err
	for {
		n, err := unix.EpollWait(e.epfd, events, -1)
		if n > 0 {
			e.dispatch(e.epfd, events[:n])
		} else if err != nil && err != unix.EINTR {
			return
		}
	}
}

// dispatch unregisters the pidfds that became readable and runs their
// functions.
func (e *exitPoller) dispatch(epfd int, evs []unix.EpollEvent) {
	for _, ev := range evs {
		e.mu.Lock()
		fn := e.fns[ev.Fd]
		delete(e.fns, ev.Fd)
		e.mu.Unlock()
		_ = unix.EpollCtl(epfd, unix.EPOLL_CTL_DEL, int(ev.Fd), nil)
		if fn != nil {
			go fn()
		}
	}
}
