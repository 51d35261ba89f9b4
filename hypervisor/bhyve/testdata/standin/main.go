// Command standin plays bhyve and bhyvectl in tests on hosts without bhyve.
// Built once, it acts as bhyvectl when its file name is "bhyvectl" and as
// bhyve otherwise.
//
// As bhyve it takes "-k CONFIG NAME", prints every setting of CONFIG and a
// line saying it runs, and then behaves as the config's standin.* keys say:
//
//	standin.exit=N       exit with status N at once
//	standin.exitfifo=P   read a number from the fifo P and exit with it,
//	                     as a guest that powers off or reboots on its own
//	standin.mode=stubborn ignore SIGTERM (otherwise SIGTERM ends it with
//	                     status 1, "powered off", as a guest answering the
//	                     ACPI power button would)
//
// As bhyvectl it appends its arguments as one line to bhyvectl.log next to
// its own executable, and says what it did on stdout, as the real one may
// (the driver puts that in the VM's log).
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	if filepath.Base(os.Args[0]) == "bhyvectl" {
		os.Exit(bhyvectl(os.Args[1:]))
	}
	os.Exit(bhyve(os.Args[1:]))
}

func bhyvectl(args []string) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bhyvectl:", err)
		return 1
	}
	f, err := os.OpenFile(filepath.Join(filepath.Dir(exe), "bhyvectl.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bhyvectl:", err)
		return 1
	}
	defer f.Close()
	fmt.Fprintln(f, strings.Join(args, " "))
	fmt.Println("standin bhyvectl done")
	return 0
}

func bhyve(args []string) int {
	if len(args) != 3 || args[0] != "-k" {
		fmt.Fprintf(os.Stderr, "usage: bhyve -k config name (got %q)\n", args)
		return 4
	}
	cfg, err := readConfig(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bhyve:", err)
		return 4
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	for _, kv := range cfg {
		fmt.Printf("config %s=%s\n", kv[0], kv[1])
	}
	get := func(key string) string {
		v := ""
		for _, kv := range cfg {
			if kv[0] == key {
				v = kv[1]
			}
		}
		return v
	}
	fmt.Printf("vm %s running\n", args[2])
	if s := get("standin.exit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bhyve: standin.exit:", err)
			return 4
		}
		return n
	}
	if p := get("standin.exitfifo"); p != "" {
		b, err := os.ReadFile(p)
		n, err2 := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || err2 != nil {
			fmt.Fprintln(os.Stderr, "bhyve: standin.exitfifo:", err, err2)
			return 4
		}
		return n
	}
	stubborn := get("standin.mode") == "stubborn"
	for range term {
		if stubborn {
			fmt.Println("ignoring SIGTERM")
			continue
		}
		fmt.Println("powering off")
		return 1
	}
	return 0
}

func readConfig(path string) ([][2]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var cfg [][2]string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s line %d: no '='", path, n)
		}
		cfg = append(cfg, [2]string{strings.TrimSpace(k), v})
	}
	return cfg, sc.Err()
}
