package atomicfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestMain(m *testing.M) {
	if path := os.Getenv("ATOMICFILE_TEST_WRITER"); path != "" {
		os.Exit(writerMain(path))
	}
	os.Exit(m.Run())
}

// contents are the records the killed writer alternates between: of
// different lengths, so a mix of two would show.
func contents() [][]byte {
	var out [][]byte
	for i, n := range []int{10, 900, 40, 3000, 1, 2500} {
		b, _ := json.Marshal(map[string]any{"i": i, "pad": strings.Repeat(string(rune('a'+i)), n)})
		out = append(out, append(b, '\n'))
	}
	return out
}

// writerMain overwrites path with each of contents in turn, for ever,
// saying "ready" once it has written each of them once.
func writerMain(path string) int {
	c := contents()
	for i := 0; ; i++ {
		if err := Overwrite(path, c[i%len(c)], Options{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if i == len(c) {
			fmt.Println("ready")
		}
	}
}

func TestOverwriteReplacesInPlace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rec.json")
	if err := Overwrite(path, []byte("created\n"), Options{Mode: 0o640}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("a new file has mode %v, want 0640", fi.Mode().Perm())
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	for _, content := range []string{"a longer content than before\n", "short\n", "", "x\n"} {
		if err := Overwrite(path, []byte(content), Options{Durable: true}); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
		fi, _ := os.Stat(path)
		if fi.Sys().(*syscall.Stat_t).Ino != ino {
			t.Fatalf("%q was written to a new file, want the same inode", content)
		}
	}
	// Larger than a page: a new file, whole.
	big := bytes.Repeat([]byte("z"), os.Getpagesize()+1)
	if err := Overwrite(path, big, Options{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, big) {
		t.Fatalf("a content larger than a page was not written whole (%d bytes)", len(got))
	}
	if err := Overwrite(path, []byte("small again\n"), Options{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "small again\n" {
		t.Fatalf("after a large content: %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

// A symbolic link or a FIFO where the file should be is replaced, never
// written through or waited on.
func TestOverwriteReplacesOddFiles(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("not yours\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{link, fifo} {
		if err := Overwrite(path, []byte("mine\n"), Options{}); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("%s is %v after Overwrite, want a regular file", path, fi.Mode())
		}
		if got, _ := os.ReadFile(path); string(got) != "mine\n" {
			t.Errorf("%s holds %q", path, got)
		}
	}
	if got, _ := os.ReadFile(target); string(got) != "not yours\n" {
		t.Errorf("the link's target was written: %q", got)
	}
}

// A writer killed at random instants, over and over, always leaves one of
// the contents it wrote, whole (trailing spaces aside), never a mix.
func TestOverwriteSurvivesWriterKill(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rec.json")
	valid := map[string]bool{}
	for _, c := range contents() {
		valid[string(c)] = true
	}
	rng := rand.New(rand.NewSource(1))
	kills := 60
	if testing.Short() {
		kills = 10
	}
	for k := 0; k < kills; k++ {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), "ATOMICFILE_TEST_WRITER="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(out)
		if line, err := r.ReadString('\n'); err != nil || line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("writer: %q %v", line, err)
		}
		// Let it write a random number of records more: it cannot be
		// told when to be in the middle of one, so spread the kills.
		for n := rng.Intn(2000); n > 0; n-- {
			_ = os.Getpid()
		}
		cmd.Process.Kill()
		cmd.Wait()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		trimmed := strings.TrimRight(string(got), " ")
		if !valid[trimmed] {
			t.Fatalf("after kill %d the file holds %d bytes that are none of the contents written: %.80q...", k, len(got), got)
		}
		var m map[string]any
		if err := json.Unmarshal(got, &m); err != nil {
			t.Fatalf("after kill %d the file does not parse: %v", k, err)
		}
	}
}
