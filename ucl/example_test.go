package ucl_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vmstated/vmstated/ucl"
)

func ExampleUnmarshal() {
	config := []byte(`
# a VM definition
bsdvm {
    cpus = 2
    memory = 4G
    stop_timeout = 30s
    network "tap0" { bridge = bridge0 }
}
`)
	var cfg map[string]struct {
		CPUs    int           `ucl:"cpus"`
		Memory  int64         `ucl:"memory"`
		Timeout time.Duration `ucl:"stop_timeout"`
		Network map[string]struct {
			Bridge string `ucl:"bridge"`
		} `ucl:"network"`
	}
	if err := ucl.Unmarshal(config, &cfg); err != nil {
		fmt.Println(err)
		return
	}
	vm := cfg["bsdvm"]
	fmt.Println(vm.CPUs, vm.Memory, vm.Timeout, vm.Network["tap0"].Bridge)
	// Output: 2 4000000000 30s bridge0
}

func ExampleUnmarshal_any() {
	var v any
	_ = ucl.Unmarshal([]byte("a = 10k; b = 10kb; c = 1.5min; d = yes; e = [1, two]"), &v)
	fmt.Printf("%#v\n", v)
	// Output: map[string]interface {}{"a":10000, "b":10240, "c":90, "d":true, "e":[]interface {}{1, "two"}}
}

func ExampleParse() {
	root, err := ucl.Parse([]byte("disk { path = /dev/ada0 }\ndisk { path = /dev/ada1 }\n"), ucl.Options{Filename: "vm0/config"})
	if err != nil {
		fmt.Println(err)
		return
	}
	disks := root.Get("disk") // a repeated key: an implicit array
	fmt.Println(disks.Kind, disks.Implicit, len(disks.Items))
	for _, d := range disks.Items {
		fmt.Println(d.Get("path").Str, "at", d.Get("path").Pos)
	}
	// Output:
	// array true 2
	// /dev/ada0 at vm0/config:1:15
	// /dev/ada1 at vm0/config:2:15
}

func ExampleParse_error() {
	_, err := ucl.Parse([]byte("name = web\ndescription = \"unfinished\n"), ucl.Options{Filename: "vm0/config"})
	fmt.Println(err)
	var pe *ucl.ParseError
	fmt.Println(errors.As(err, &pe), pe.Pos.Line, pe.Pos.Col)
	// Output:
	// vm0/config:2:15: unterminated string started at 2:15: the line ends before the closing '"' (write a line break as \n, or use a <<EOD heredoc)
	// true 2 15
}

func ExampleParseFile() {
	dir, _ := os.MkdirTemp("", "ucl-example")
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "template.conf"), []byte("cpus = 1\nmemory = 1G\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "config"), []byte(`
.include "template.conf"
.priority 1
cpus = 4  # overrides the template
name = $VM
`), 0o644)
	root, err := ucl.ParseFile(filepath.Join(dir, "config"), ucl.Options{
		Macros: true,
		Vars:   map[string]string{"VM": "vm0"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(root.Get("cpus").Int, root.Get("memory").Int, root.Get("name").Str)
	// Output: 4 1000000000 vm0
}
