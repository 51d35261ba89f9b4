module github.com/vmstated/vmstated

go 1.26.8

require (
	github.com/creack/pty v1.1.24
	github.com/fsnotify/fsnotify v1.10.1
	github.com/looplab/fsm v1.0.3
	golang.org/x/sys v0.49.0
	golang.org/x/term v0.47.0
	gopkg.in/natefinch/lumberjack.v2 v2.2.1
)

require github.com/creack/pty v1.1.24

require github.com/kdomanski/iso9660 v0.4.0
