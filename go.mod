module github.com/vmstated/vmstated

go 1.26.8
