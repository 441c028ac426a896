package main

import (
	"bytes"
	"strings"
	"testing"
)

// A wrong number of arguments is one line that names the command and
// shows how to call it.
func TestWrongArgumentCountNamesTheCommand(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"register"}, "saga: register: accepts 1 arg(s), received 0 (usage: saga register SERVICE"},
		{[]string{"deregister", "web"}, "saga: deregister: accepts 2 arg(s), received 1 (usage: saga deregister SERVICE ID"},
		{[]string{"lookup", "a", "b"}, "saga: lookup: accepts 1 arg(s), received 2 (usage: saga lookup SERVICE"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), tt.args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
		if code == 0 {
			t.Errorf("saga %v: exit status 0, want non-zero", tt.args)
		}
		got := stderr.String()
		if strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, tt.want) {
			t.Errorf("saga %v: stderr %q, want one line starting %q", tt.args, got, tt.want)
		}
	}
}
