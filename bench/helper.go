package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The suite's own binary doubles as two tiny programs, so that the
// timestamps of the crash scenario come from inside the processes at the
// moment that matters, without a shell or date(1) in between:
//
//   - the crash sleeper (argv[1] == SleeperArg): sleeps, appends the time
//     to a file, and exits with a crash status at once;
//   - the stamp hook (invoked through a link named after a hook state,
//     e.g. "restarting", or run as that state's hook): appends the time to
//     StampFile in $VMSTATED_CONFIG_DIR and exits 0.
const (
	// SleeperArg selects the crash sleeper: vmbench SleeperArg ms file code.
	SleeperArg = "__bench_sleeper"
	// StampFile is where the stamp hook writes, in the VM's config dir.
	StampFile = "hook.stamps"
	// stampHook is the hook state the stamp hook is linked as.
	stampHook = "restarting"
)

// Helper runs one of the helper programs when args (os.Args) ask for it
// and reports whether it did; the caller exits with the returned status.
func Helper(args []string) (bool, int) {
	now := time.Now()
	// A hook is run through its descriptor, so argv[0] may be
	// /proc/self/fd/N; its state, argv[2], says what it is run as.
	if len(args) > 0 && (filepath.Base(args[0]) == stampHook || len(args) == 3 && args[2] == stampHook && os.Getenv("VMSTATED_STATE") == stampHook) {
		dir := os.Getenv("VMSTATED_CONFIG_DIR")
		if dir == "" {
			fmt.Fprintln(os.Stderr, "stamp hook: VMSTATED_CONFIG_DIR is not set")
			return true, 1
		}
		if err := appendStamp(filepath.Join(dir, StampFile), now); err != nil {
			fmt.Fprintln(os.Stderr, "stamp hook:", err)
			return true, 1
		}
		return true, 0
	}
	if len(args) >= 5 && args[1] == SleeperArg {
		msec, err1 := strconv.Atoi(args[2])
		code, err2 := strconv.Atoi(args[4])
		if err1 != nil || err2 != nil {
			fmt.Fprintln(os.Stderr, "usage: vmbench", SleeperArg, "ms file exitcode")
			return true, 2
		}
		time.Sleep(time.Duration(msec) * time.Millisecond)
		if err := appendStamp(args[3], time.Now()); err != nil {
			fmt.Fprintln(os.Stderr, "sleeper:", err)
			return true, 1
		}
		return true, code
	}
	return false, 0
}

func appendStamp(path string, t time.Time) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%d\n", t.UnixNano())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readStamps reads the times a helper appended to path.
func readStamps(path string) ([]time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []time.Time
	for _, line := range splitLines(string(b)) {
		n, err := strconv.ParseInt(line, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: bad stamp %q", path, line)
		}
		out = append(out, time.Unix(0, n))
	}
	return out, nil
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
