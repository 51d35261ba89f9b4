package examples

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// reHeading is a Markdown heading below the title; a shell or UCL comment
// in a block has one '#'.
var reHeading = regexp.MustCompile(`^#{2,6} `)

// Every code block of the README ends before the next heading: a fence
// left open swallows the sections after it into one block of code, and
// the next fence then opens a block where one should close.
func TestReadmeCodeBlocksClosed(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	open := 0 // line number of the fence that opened the current block
	for i, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			if open == 0 {
				open = i + 1
			} else {
				open = 0
			}
		case open != 0 && reHeading.MatchString(line):
			t.Errorf("README.md:%d: heading %q inside the code block opened at line %d; close that block first", i+1, line, open)
			open = 0
		}
	}
	if open != 0 {
		t.Errorf("README.md:%d: a code block that never ends", open)
	}
}

// The README sections whose transcripts ("$ command" and its output) a
// test runs: TestReadmeSession and TestReadmeMetricsSession here,
// TestReadmeRemoteSession, TestReadmeConsoleSession and
// TestReadmeAgentVNCSession in tests/.
var testedTranscripts = map[string]bool{
	"A short session":             true,
	"Other hosts, and monitoring": true,
	"A guest's console":           true,
	"Guest agent and VNC":         true,
}

// A transcript in any other section would show output no test checks.
func TestReadmeTranscriptsAreTested(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section, inBlock := "", false
	for i, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			inBlock = !inBlock
		case !inBlock && strings.HasPrefix(line, "## "):
			section = strings.TrimPrefix(line, "## ")
		case inBlock && strings.HasPrefix(line, "$ ") && !testedTranscripts[section]:
			t.Errorf("README.md:%d: a transcript in section %q that no test runs; run it in a test (see examples/session_test.go, tests/readme_test.go) and name the section in testedTranscripts", i+1, section)
		}
	}
}
