package redisstore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every malformed URL is refused by Open with one error that names the part
// at fault and never echoes the password (package redisurl tests each form).
func TestOpenRejectsMalformedURL(t *testing.T) {
	tests := []struct {
		url      string
		mentions string
	}{
		{"", "scheme is missing"},
		{"127.0.0.1:6379", "scheme is missing"},
		{"app:hunter2@127.0.0.1:6379", "scheme is missing"},
		{"http://127.0.0.1:6379", `scheme "http"`},
		{"redis://", "host is missing"},
		{"redis://:hunter2@", "host is missing"},
		{"redis://h:abc", `port "abc"`},
		{"redis://h:0", `port "0"`},
		{"redis://h:70000", `port "70000"`},
		{"redis://:6379", "host name is missing"},
		{"redis://h:6379/x", `database "x"`},
		{"redis://h:6379/-1", `database "-1"`},
		{"redis://a:1,b:2", "takes one host"},
		{"redis://h:6379?db=1", "query parameters"},
		{"redis://u:%zz@h", "password is not valid percent-encoding"},
		{"redis://::1:6379", "brackets"},
		{"redis-sentinel://s1:26379", "master name"},
		{"redis-sentinel://s1:26379/", "master name"},
		{"redis-sentinel://s1:26379/a/b", "master name"},
		{"redis-sentinel://s1:26379,,s2/m", "empty entry"},
		{"redis-cluster://n1:7000/0", "no path"},
		{"redis-cluster://u:hunter2@n1:7000/0", "no path"},
		{"redis-cluster://n1:7000,n2:x", `port "x"`},
	}
	for _, tt := range tests {
		_, err := Open(context.Background(), Options{URL: tt.url}, nil)
		if err == nil {
			t.Errorf("Open(%q) succeeded, want an error mentioning %q", tt.url, tt.mentions)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "redis url: ") || !strings.Contains(msg, tt.mentions) {
			t.Errorf("Open(%q) = %q, want a redis url error mentioning %q", tt.url, msg, tt.mentions)
		}
		if strings.Contains(msg, "hunter2") {
			t.Errorf("Open(%q) error repeats the password: %q", tt.url, msg)
		}
	}
}

func TestOpenRejectsBadTLSFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name     string
		opts     Options
		mentions string
	}{
		{"CA file missing", Options{URL: "rediss://h:6380", CAFile: missing}, "CA file"},
		{"CA file not PEM", Options{URL: "rediss://h:6380", CAFile: garbage}, "no PEM certificate"},
		{"cert without key", Options{URL: "rediss://h:6380", CertFile: garbage}, "both a cert file and a key file"},
		{"unreadable key pair", Options{URL: "rediss://h:6380", CertFile: missing, KeyFile: missing}, "client certificate"},
		{"TLS files on redis://", Options{URL: "redis://h:6379", CAFile: garbage}, "not rediss://"},
	}
	for _, tt := range tests {
		_, err := Open(context.Background(), tt.opts, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "redis tls: ") || !strings.Contains(err.Error(), tt.mentions) {
			t.Errorf("%s: Open = %v, want a redis tls error mentioning %q", tt.name, err, tt.mentions)
		}
	}
	if _, err := Open(context.Background(), Options{URL: "redis://h:6379", MinReplicasAck: -1}, nil); err == nil || !strings.Contains(err.Error(), "min replicas ack") {
		t.Errorf("Open with MinReplicasAck -1 = %v, want an error naming it", err)
	}
}
