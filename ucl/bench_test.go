package ucl

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
)

var (
	benchOnce sync.Once
	benchJSON []byte
	benchUCL  []byte
)

// benchDocs builds, deterministically, a ~1 MB JSON document (an array of
// VM-like objects) and a ~1 MB UCL config with many vm sections.
func benchDocs() ([]byte, []byte) {
	benchOnce.Do(func() {
		var vms []any
		size := 0
		for i := 0; size < 1<<20; i++ {
			vm := map[string]any{
				"name":        fmt.Sprintf("vm%05d", i),
				"description": fmt.Sprintf("Test machine number %d \"quoted\" \u00e9", i),
				"cpus":        i%16 + 1,
				"memory":      (i%8 + 1) * 1024,
				"load":        float64(i%100) / 7,
				"autostart":   i%2 == 0,
				"owner":       nil,
				"tags":        []any{"prod", "web", fmt.Sprintf("rack-%d", i%40)},
				"network": map[string]any{
					"bridge": fmt.Sprintf("bridge%d", i%4),
					"mac":    fmt.Sprintf("58:9c:fc:00:%02x:%02x", i/256%256, i%256),
					"mtu":    1500,
				},
				"disks": []any{
					map[string]any{"path": fmt.Sprintf("/dev/zvol/zroot/vm%d", i), "size": 21474836480, "ratio": 0.75},
					map[string]any{"path": fmt.Sprintf("/dev/zvol/zroot/vm%d-data", i), "size": 1 << 30, "ratio": 1.5e-3},
				},
			}
			vms = append(vms, vm)
			b, _ := json.Marshal(vm)
			size += len(b) + 1
		}
		benchJSON, _ = json.Marshal(vms)

		var b strings.Builder
		b.WriteString("# generated benchmark config\n")
		for i := 0; b.Len() < 1<<20; i++ {
			fmt.Fprintf(&b, "vm \"vm%05d\" {\n", i)
			fmt.Fprintf(&b, "    # machine %d\n", i)
			fmt.Fprintf(&b, "    configfile = /usr/local/etc/vmstated/vm%05d/bhyve_config;\n", i)
			fmt.Fprintf(&b, "    description = Test machine number %d\n", i)
			fmt.Fprintf(&b, "    cpus = %d\n    memory = %dG\n    maxrestart = 3\n    maxrestarttime = 10min\n", i%16+1, i%8+1)
			b.WriteString("    stop_timeout = 30s; hook_timeout = 1.5min\n    autostart = yes\n")
			b.WriteString("    /* network section */\n")
			fmt.Fprintf(&b, "    network \"tap%d\" { bridge = bridge%d; mac = \"58:9c:fc:00:%02x:%02x\"; }\n", i%8, i%4, i/256%256, i%256)
			fmt.Fprintf(&b, "    disk ada0 { path = /dev/zvol/zroot/vm%d; size = 20gb; }\n", i)
			fmt.Fprintf(&b, "    tags = [prod, web, \"rack-%d\"]\n}\n", i%40)
		}
		benchUCL = []byte(b.String())
	})
	return benchJSON, benchUCL
}

func BenchmarkUnmarshalJSON(b *testing.B) {
	data, _ := benchDocs()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var v any
		if err := Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStdlibJSON(b *testing.B) {
	data, _ := benchDocs()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalUCL(b *testing.B) {
	_, data := benchDocs()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var v any
		if err := Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseUCL(b *testing.B) {
	_, data := benchDocs()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBenchDocsAgree checks that the benchmark JSON decodes to the same
// value as encoding/json gives (numbers compared as float64).
func TestBenchDocsAgree(t *testing.T) {
	data, ucl := benchDocs()
	var got, want any
	if err := Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	if d := diff("$", toFloat(got), want); d != "" {
		t.Fatal(d)
	}
	if _, err := Parse(ucl, Options{}); err != nil {
		t.Fatal(err)
	}
}

func toFloat(v any) any {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case []any:
		for i := range x {
			x[i] = toFloat(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = toFloat(x[k])
		}
	}
	return v
}
