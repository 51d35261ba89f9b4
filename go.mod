module github.com/vmstated/vmstated

go 1.26.8

require github.com/looplab/fsm v1.0.3

require (
	golang.org/x/sys v0.49.0 // indirect
	gopkg.in/natefinch/lumberjack.v2 v2.2.1 // indirect
)
