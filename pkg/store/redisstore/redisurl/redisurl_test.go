package redisurl

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		url  string
		want URL
	}{
		{"redis://127.0.0.1:6379", URL{Kind: Standalone, Addrs: []string{"127.0.0.1:6379"}}},
		{"redis://localhost", URL{Kind: Standalone, Addrs: []string{"localhost:6379"}}},
		{"redis://user:p%40ss@db.example:6380/3", URL{Kind: Standalone, Addrs: []string{"db.example:6380"}, Username: "user", Password: "p@ss", DB: 3}},
		{"redis://:secret@[::1]:6379/", URL{Kind: Standalone, Addrs: []string{"[::1]:6379"}, Password: "secret"}},
		{"redis://[::1]", URL{Kind: Standalone, Addrs: []string{"[::1]:6379"}}},
		{"redis://secret@h:1", URL{Kind: Standalone, Addrs: []string{"h:1"}, Password: "secret"}},
		{"redis://u:a/b?c#d@e@h:6379/2", URL{Kind: Standalone, Addrs: []string{"h:6379"}, Username: "u", Password: "a/b?c#d@e", DB: 2}},
		{"rediss://cache.example:6380", URL{Kind: Standalone, Addrs: []string{"cache.example:6380"}, TLS: true}},
		{"rediss://u:p@h:6380/1", URL{Kind: Standalone, Addrs: []string{"h:6380"}, Username: "u", Password: "p", DB: 1, TLS: true}},
		{"redis-sentinel://s1:26379,s2,s3:26380/mymaster", URL{Kind: Sentinel, Addrs: []string{"s1:26379", "s2:26379", "s3:26380"}, MasterName: "mymaster"}},
		{"redis-sentinel://pw@s1:26379/m", URL{Kind: Sentinel, Addrs: []string{"s1:26379"}, Password: "pw", MasterName: "m"}},
		{"redis-cluster://n1:7000,n2:7001,n3", URL{Kind: Cluster, Addrs: []string{"n1:7000", "n2:7001", "n3:6379"}}},
		{"redis-cluster://u:pw@n1:7000,n2:7001", URL{Kind: Cluster, Addrs: []string{"n1:7000", "n2:7001"}, Username: "u", Password: "pw"}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.url)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.url, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.url, got, tt.want)
		}
	}
}

// Every malformed URL is refused with an error that names the part at
// fault and never repeats the user information.
func TestParseRefuses(t *testing.T) {
	tests := []struct {
		url      string
		mentions string
	}{
		{"", "scheme is missing"},
		{"127.0.0.1:6379", "scheme is missing"},
		{"app:hunter2@127.0.0.1:6379", "scheme is missing"},
		{"app:hun://ter2@127.0.0.1:6379", "scheme is missing"},
		{"http://127.0.0.1:6379", `scheme "http"`},
		{"REDIS://127.0.0.1:6379", `scheme "REDIS"`},
		{"redis://", "host is missing"},
		{"redis://:hunter2@", "host is missing"},
		{"redis://:hunter2@/0", "host is missing"},
		{"redis://h:abc", `port "abc"`},
		{"redis://h:0", `port "0"`},
		{"redis://h:70000", `port "70000"`},
		{"redis://:6379", "host name is missing"},
		{"redis://h:6379/x", `database "x"`},
		{"redis://h:6379/-1", `database "-1"`},
		{"redis://a:1,b:2", "takes one host"},
		{"rediss://a:1,b:2", "rediss:// takes one host"},
		{"redis://h:6379?db=1", "query parameters"},
		{"redis://:hunter2@h:6379/0?password=x", "query parameters"},
		{"redis://h:6379#x", "fragments"},
		{"redis://u:%zz@h", "password is not valid percent-encoding"},
		{"redis://%zz:hunter2@h", "user name is not valid percent-encoding"},
		{"redis://::1:6379", "brackets"},
		{"redis-sentinel://s1:26379", "master name is missing"},
		{"redis-sentinel://hunter2@s1:26379/", "master name is missing"},
		{"redis-sentinel://s1:26379/a/b", `master name "a/b"`},
		{"redis-sentinel://s1:26379,,s2/m", "empty entry"},
		{"redis-cluster://n1:7000/0", `path "/0"`},
		{"redis-cluster://u:hunter2@n1:7000,n2:x", `port "x"`},
	}
	for _, tt := range tests {
		_, err := Parse(tt.url)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want an error mentioning %q", tt.url, tt.mentions)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tt.mentions) || strings.Contains(msg, "hunter2") || strings.Contains(msg, "ter2") {
			t.Errorf("Parse(%q) = %q, want an error mentioning %q and not the password", tt.url, msg, tt.mentions)
		}
	}
}

func TestMask(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"redis://127.0.0.1:6379", "redis://127.0.0.1:6379"},
		{"redis://user:pass@127.0.0.1:6379/0", "redis://user:****@127.0.0.1:6379/0"},
		{"redis://:pass@127.0.0.1:6379", "redis://:****@127.0.0.1:6379"},
		{"redis://pass@127.0.0.1:6379", "redis://****@127.0.0.1:6379"},
		{"rediss://u:p@ss@h:6380", "rediss://u:****@h:6380"},
		{"rediss://u:p/ss?#@h:6380/1", "rediss://u:****@h:6380/1"},
		{"redis-sentinel://pw@h1:26379,h2:26379/mymaster", "redis-sentinel://****@h1:26379,h2:26379/mymaster"},
		{"redis-cluster://h1:6379,h2:6379", "redis-cluster://h1:6379,h2:6379"},
		{"redis-cluster://u:pw@h1:6379,h2:6379", "redis-cluster://u:****@h1:6379,h2:6379"},
		// What Parse refuses is masked too.
		{"http://user:pw@example.com", "http://user:****@example.com"},
		{"user:pw@example.com:6379", "user:****@example.com:6379"},
		{"redis://h:6379/0?password=x&db=1", "redis://h:6379/0?password=****&db=****"},
		{"redis-sentinel://h1:26379/m?sentinel_password=x#frag", "redis-sentinel://h1:26379/m?sentinel_password=****#frag"},
		{"not a url", "not a url"},
	}
	for _, tt := range tests {
		if got := Mask(tt.in); got != tt.want {
			t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestMaskAgreesWithParse: Mask hides exactly the password that Parse
// reads. The masked form of an accepted URL parses to the same URL with
// "****" as its password.
func TestMaskAgreesWithParse(t *testing.T) {
	for _, raw := range []string{
		"redis://user:pass@127.0.0.1:6379/0",
		"redis://:pa/ss@h",
		"redis://pass@h:6379",
		"rediss://u:p@ss@h:6380/2",
		"redis-sentinel://pass@h1:26379,h2:26379/master",
		"redis-cluster://user:pass@h1:6379,h2:6379",
	} {
		u, err := Parse(raw)
		if err != nil {
			t.Fatalf("Parse(%q): %v", raw, err)
		}
		masked := Mask(raw)
		if strings.Contains(masked, u.Password) {
			t.Errorf("Mask(%q) = %q shows the password", raw, masked)
		}
		m, err := Parse(masked)
		if err != nil {
			t.Fatalf("Parse(Mask(%q)) = %v", raw, err)
		}
		u.Password = "****"
		if !reflect.DeepEqual(m, u) {
			t.Errorf("Parse(Mask(%q)) = %+v, want %+v", raw, m, u)
		}
	}
}

// FuzzMaskHidesPassword: whatever the password holds, the masked URL and
// Parse's error never show it, and Mask changes nothing else.
func FuzzMaskHidesPassword(f *testing.F) {
	f.Add("redis", "app", "hunter2", "127.0.0.1:6379/0")
	f.Add("redis-sentinel", "", "s3cret/with?odd#chars", "h1,h2/master")
	f.Add("redis-cluster", "u", "p@ss:word", "n1:7000,n2:x")
	f.Add("http", "u", "s3cret", "example.com")
	f.Fuzz(func(t *testing.T, scheme, user, pass, rest string) {
		if strings.ContainsAny(user, ":@") || strings.Contains(rest, "@") || len(pass) < 6 ||
			strings.Contains(scheme+user+rest, pass) {
			t.Skip()
		}
		raw := scheme + "://" + user + ":" + pass + "@" + rest
		masked := Mask(raw)
		if strings.Contains(masked, pass) {
			t.Fatalf("Mask(%q) = %q shows the password", raw, masked)
		}
		if _, err := Parse(raw); err != nil && strings.Contains(err.Error(), pass) {
			// Unless the message says the same with any password.
			if _, same := Parse(scheme + "://" + user + ":x@" + rest); same == nil || !strings.Contains(same.Error(), pass) {
				t.Fatalf("Parse(%q) error %q shows the password", raw, err)
			}
		}
		if !strings.ContainsAny(rest, "?#") && validScheme(scheme) {
			if want := scheme + "://" + user + ":****@" + rest; masked != want {
				t.Fatalf("Mask(%q) = %q, want %q", raw, masked, want)
			}
		}
	})
}
