package ucl

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

type diskSpec struct {
	Path string `ucl:"path"`
	Size int64  `ucl:"size"`
}

type vmSpec struct {
	Name        string            `ucl:"name"`
	ConfigFile  string            // matched as "configfile"
	CPUs        int               `ucl:"cpus"`
	Memory      uint64            `ucl:"memory"`
	MaxRestart  int8              `ucl:"maxrestart"`
	Restart     time.Duration     `ucl:"maxrestarttime"`
	Stop        time.Duration     `ucl:"stop_timeout"`
	Hook        time.Duration     `ucl:"hook_timeout"`
	Autostart   bool              `ucl:"autostart"`
	OSVersion   string            `ucl:"osversion"`
	Load        float64           `ucl:"load"`
	Tags        []string          `ucl:"tags"`
	Disks       []diskSpec        `ucl:"disk"`
	Env         map[string]string `ucl:"env"`
	Owner       *string           `ucl:"owner"`
	Addr        netip.Addr        `ucl:"addr"`
	Raw         *Node             `ucl:"raw"`
	Extra       any               `ucl:"extra"`
	Ignored     string            `ucl:"-"`
	unexported  int
	Description string
}

func TestDecodeStruct(t *testing.T) {
	src := `
name = web
ConfigFile = /etc/web.conf
cpus = 4
memory = 8G
maxrestart = 3
maxrestarttime = 10min
stop_timeout = 30
hook_timeout = 1h30m
autostart = yes
osversion = 14.0
load = 2
tags = [a, b]
disk { path = /dev/ada0; size = 20gb; }
disk { path = /dev/ada1; size = 1kb; }
env { A = 1; B = two }
owner = root
addr = "10.0.0.1"
raw = { x = 1 }
extra = [1, x]
Ignored = nope
unknown = 1
`
	var vm vmSpec
	if err := Unmarshal([]byte(src), &vm); err != nil {
		t.Fatal(err)
	}
	if vm.Name != "web" || vm.ConfigFile != "/etc/web.conf" || vm.CPUs != 4 || vm.Memory != 8e9 || vm.MaxRestart != 3 {
		t.Errorf("scalars: %+v", vm)
	}
	if vm.Restart != 10*time.Minute || vm.Stop != 30*time.Second || vm.Hook != 90*time.Minute {
		t.Errorf("durations: %v %v %v", vm.Restart, vm.Stop, vm.Hook)
	}
	if !vm.Autostart || vm.OSVersion != "14.0" || vm.Load != 2 || strings.Join(vm.Tags, ",") != "a,b" {
		t.Errorf("misc: %+v", vm)
	}
	if len(vm.Disks) != 2 || vm.Disks[1].Size != 1024 || vm.Disks[0].Path != "/dev/ada0" {
		t.Errorf("disks: %+v", vm.Disks)
	}
	if vm.Env["A"] != "1" || vm.Env["B"] != "two" || vm.Owner == nil || *vm.Owner != "root" {
		t.Errorf("env/owner: %+v %v", vm.Env, vm.Owner)
	}
	if vm.Addr != netip.MustParseAddr("10.0.0.1") || vm.Raw.Get("x").Int != 1 || vm.Ignored != "" {
		t.Errorf("addr/raw/ignored: %v %v %q", vm.Addr, vm.Raw, vm.Ignored)
	}
	if e, ok := vm.Extra.([]any); !ok || e[0] != int64(1) || e[1] != "x" {
		t.Errorf("extra: %#v", vm.Extra)
	}
	// A single value decodes into a slice as one element.
	var one struct{ Disk []diskSpec }
	if err := Unmarshal([]byte("disk { path = x }"), &one); err != nil || len(one.Disk) != 1 {
		t.Errorf("single into slice: %v %+v", err, one)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, src string
		into      any
		pos, path string
		msg       string
	}{
		{"int8 overflow", "vm { maxrestart = 300 }", &struct{ VM vmSpec }{}, "1:19", "vm.maxrestart", "does not fit in int8"},
		{"negative uint", "memory = -1", &vmSpec{}, "1:10", "memory", "does not fit in uint64"},
		{"string as int", "cpus = four", &vmSpec{}, "1:8", "cpus", `cannot use string "four" as an integer`},
		{"fraction as int", "cpus = 1.5", &vmSpec{}, "1:8", "cpus", "not a whole number"},
		{"bad duration", "stop_timeout = soon", &vmSpec{}, "1:16", "stop_timeout", "duration"},
		{"bool", "autostart = maybe", &vmSpec{}, "1:13", "autostart", "boolean"},
		{"repeated scalar", "cpus = 1\ncpus = 2", &vmSpec{}, "2:8", "cpus", "given 2 times"},
		{"object as string", "name { }", &vmSpec{}, "1:6", "name", "as a string"},
		{"nested path", "disk { size = 1 }\ndisk { size = x }", &vmSpec{}, "2:15", "disk[1].size", "as an integer"},
		{"text unmarshaler", "addr = nope", &vmSpec{}, "1:8", "addr", "ParseAddr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Unmarshal([]byte(tt.src), tt.into)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a DecodeError", err)
			}
			if de.Pos.String() != tt.pos || de.Path != tt.path || !strings.Contains(de.Msg, tt.msg) {
				t.Errorf("got %q (path %q), want %s %s %q", err, de.Path, tt.pos, tt.path, tt.msg)
			}
		})
	}
	if err := Unmarshal([]byte("a = 1"), vmSpec{}); err == nil {
		t.Error("non-pointer accepted")
	}
}

func TestDecodeSubtree(t *testing.T) {
	n, err := Parse([]byte("vm \"a\" { cpus = 2 }"), Options{Filename: "cfg"})
	if err != nil {
		t.Fatal(err)
	}
	var vm vmSpec
	if err := n.Get("vm").Get("a").Decode(&vm); err != nil || vm.CPUs != 2 {
		t.Fatalf("%v %+v", err, vm)
	}
	var m map[string]int
	err = n.Get("vm").Decode(&m)
	if err == nil || !strings.HasPrefix(err.Error(), "cfg:1:8: a: ") {
		t.Errorf("got %v", err)
	}
}
