package remote

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Target
		err  string
	}{
		{"ssh://web1", Target{Host: "web1"}, ""},
		{"ssh://ann@web1:2222/run/vmstated.sock", Target{User: "ann", Host: "web1", Port: "2222", Socket: "/run/vmstated.sock"}, ""},
		{"ssh://[::1]:22/", Target{Host: "::1", Port: "22"}, ""},
		{"web1", Target{}, "only ssh://"},
		{"unix:///run/x.sock", Target{}, "only ssh://"},
		{"ssh://", Target{}, "no host"},
		{"ssh://-oProxyCommand=x", Target{}, "may not begin with '-'"},
		{"ssh://-l@web1", Target{}, "may not begin with '-'"},
		{"ssh://ann:secret@web1", Target{}, "passwords"},
		{"ssh://web1:0", Target{}, "port"},
		{"ssh://web1:http", Target{}, ""}, // url.Parse refuses it first
		{"ssh://web1/x?y=1", Target{}, "no query"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.in == "ssh://web1:http" {
			if err == nil {
				t.Errorf("Parse(%q) accepted a port that is not a number", tt.in)
			}
			continue
		}
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Parse(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestCommand(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tg, _ := Parse("ssh://ann@web1:2222/run/it's.sock")
	got := tg.Command(env(nil))
	want := []string{"ssh", "-T", "-p", "2222", "--", "ann@web1", `'vmstatedctl' dial-stdio -s '/run/it'\''s.sock'`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Command = %q\nwant      %q", got, want)
	}
	tg, _ = Parse("ssh://web1")
	got = tg.Command(env(map[string]string{EnvSSHCommand: "ssh -F /etc/lab.conf", EnvRemoteCtl: "/usr/local/sbin/vmstatedctl"}))
	want = []string{"ssh", "-F", "/etc/lab.conf", "-T", "--", "web1", `'/usr/local/sbin/vmstatedctl' dial-stdio`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Command = %q\nwant      %q", got, want)
	}
	if s := tg.String(); s != "ssh://web1" {
		t.Errorf("String = %q", s)
	}
}
