package statemachine

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the diagram in docs/states.md from the table")

const (
	diagramFile  = "../docs/states.md"
	diagramBegin = "```mermaid\n"
	diagramEnd   = "```\n"
)

// TestDiagramUpToDate fails when the committed diagram and the table
// disagree. Run `go test ./statemachine -run Diagram -update` after changing
// the table.
func TestDiagramUpToDate(t *testing.T) {
	want, err := Diagram()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(want, "\n") {
		want += "\n"
	}
	doc, err := os.ReadFile(diagramFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	i := strings.Index(text, diagramBegin)
	if i < 0 {
		t.Fatalf("%s has no mermaid block", diagramFile)
	}
	body := i + len(diagramBegin)
	j := strings.Index(text[body:], diagramEnd)
	if j < 0 {
		t.Fatalf("%s: mermaid block is not closed", diagramFile)
	}
	got := text[body : body+j]
	if got == want {
		return
	}
	if *update {
		text = text[:body] + want + text[body+j:]
		if err := os.WriteFile(diagramFile, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%s is out of date with the transition table; run: go test ./statemachine -run Diagram -update\n--- committed\n%s\n--- table\n%s", diagramFile, got, want)
}
