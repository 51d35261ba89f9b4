// Package docs holds design notes; its test keeps dependencies.md true to
// go.mod.
package docs

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// requires returns the modules go.mod requires: direct ones, and all.
func requires(t *testing.T) (direct, all map[string]bool) {
	t.Helper()
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	direct, all = map[string]bool{}, map[string]bool{}
	inBlock := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "require (":
			inBlock = true
			continue
		case inBlock && line == ")":
			inBlock = false
			continue
		case strings.HasPrefix(line, "require "):
			line = strings.TrimPrefix(line, "require ")
		case !inBlock:
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		all[f[0]] = true
		if !strings.Contains(line, "// indirect") {
			direct[f[0]] = true
		}
	}
	return direct, all
}

// modulesUnder returns the module paths of the ### headings in the ##
// section title of dependencies.md.
func modulesUnder(t *testing.T, doc, title string) map[string]bool {
	t.Helper()
	i := strings.Index(doc, "\n## "+title+"\n")
	if i < 0 {
		t.Fatalf("dependencies.md has no section %q", title)
	}
	sec := doc[i+len(title)+5:]
	if j := strings.Index(sec, "\n## "); j >= 0 {
		sec = sec[:j]
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^### (\S+)`).FindAllStringSubmatch(sec, -1) {
		if strings.Contains(m[1], ".") && strings.Contains(m[1], "/") {
			out[m[1]] = true
		}
	}
	return out
}

func TestDependenciesDocumented(t *testing.T) {
	b, err := os.ReadFile("dependencies.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	direct, all := requires(t)
	taken, notTaken := modulesUnder(t, doc, "Taken"), modulesUnder(t, doc, "Not taken")
	for m := range direct {
		if !taken[m] {
			t.Errorf("go.mod requires %s, but dependencies.md does not say what for (add a ### %s section under Taken)", m, m)
		}
	}
	for m := range taken {
		if !direct[m] {
			t.Errorf("dependencies.md lists %s as taken, but go.mod does not require it", m)
		}
	}
	for m := range notTaken {
		if all[m] {
			t.Errorf("dependencies.md says %s was not taken, but go.mod requires it", m)
		}
	}
	if len(notTaken) == 0 {
		t.Error("dependencies.md names no module under Not taken")
	}
}

// Where disks are configured, the pages say to keep them out of the
// watched VM directories (kqueue's descriptor per file on FreeBSD).
func TestKqueueNote(t *testing.T) {
	b, err := os.ReadFile("../man/vmstated.conf.5")
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	i := strings.Index(page, ".Ss Disks")
	if i < 0 {
		t.Fatal("vmstated.conf.5 has no Disks section")
	}
	disks := page[i:]
	if j := strings.Index(disks[1:], "\n.Ss "); j >= 0 {
		disks = disks[:j+1]
	}
	if !strings.Contains(disks, "kqueue") || !strings.Contains(disks, "outside the VM's directory") {
		t.Error("vmstated.conf.5, Disks: the note on keeping images outside the watched VM directory (kqueue) is missing")
	}
}
