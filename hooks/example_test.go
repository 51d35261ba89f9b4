package hooks_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/vmstated/vmstated/hooks"
)

func ExampleRun() {
	dir, err := os.MkdirTemp("", "vm")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	hook := filepath.Join(dir, "start_storage")
	script := "#!/bin/sh\necho \"attaching disks of $VMSTATED_NAME\"\necho 'no such volume' >&2\nexit 3\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		log.Fatal(err)
	}

	res := hooks.Run(context.Background(), hooks.Request{
		Env:     hooks.Env{Name: "web", State: "start_storage", ConfigDir: dir},
		Timeout: time.Minute,
		Output:  os.Stdout, // the VM's log in the daemon
	})
	fmt.Println(res.OK(), res.ExitCode)
	fmt.Println(res.Reason())
	// Unordered output:
	// [hook start_storage] attaching disks of web
	// [hook start_storage stderr] no such volume
	// false 3
	// hook start_storage exited with status 3
}
