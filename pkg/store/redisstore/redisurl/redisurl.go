// Package redisurl is the grammar of Saga's Redis URLs, in one place: the
// Redis store parses its URL with it, configuration validation checks
// redis.url with it, and Mask hides exactly the password it reads. It
// imports nothing but the standard library, so the configuration can use
// it without pulling in a Redis client.
//
// The forms:
//
//	redis://[user:pass@]host[:port][/db]
//	rediss://[user:pass@]host[:port][/db]                 (TLS)
//	redis-sentinel://[pass@]h1[:26379],h2[:26379]/mastername
//	redis-cluster://[user:pass@]h1[:6379],h2[:6379]
//
// The user information ends at the last '@', so a password may hold any
// character, '/', '?', '#' and '@' included; '%' starts a percent-encoded
// byte. A lone word before the '@' is a password, as Redis's legacy AUTH
// takes it. There are no query parameters: every option has its own
// setting.
package redisurl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Kind is the deployment a URL names.
type Kind int

// The kinds, by scheme.
const (
	Standalone Kind = iota // redis:// and rediss://
	Sentinel               // redis-sentinel://
	Cluster                // redis-cluster://
)

// Default ports, when a host names none.
const (
	DefaultPort         = "6379"
	DefaultSentinelPort = "26379"
)

// URL is a parsed Redis URL.
type URL struct {
	Kind       Kind
	Addrs      []string // host:port, one for Standalone, one or more otherwise
	Username   string
	Password   string
	DB         int    // Standalone only
	MasterName string // Sentinel only
	TLS        bool   // rediss://
}

// Parse reads raw by hand rather than with net/url, because the Sentinel
// and Cluster forms carry a comma-separated host list. Its errors name the
// part at fault and never repeat the user information.
func Parse(raw string) (URL, error) {
	var u URL
	p := split(raw)
	if !p.hasScheme {
		return u, errors.New("the scheme is missing: want redis://, rediss://, redis-sentinel:// or redis-cluster://")
	}
	defaultPort := DefaultPort
	switch p.scheme {
	case "redis":
	case "rediss":
		u.TLS = true
	case "redis-sentinel":
		u.Kind, defaultPort = Sentinel, DefaultSentinelPort
	case "redis-cluster":
		u.Kind = Cluster
	default:
		return u, fmt.Errorf("scheme %q is not redis, rediss, redis-sentinel or redis-cluster", p.scheme)
	}
	if strings.ContainsAny(p.rest, "?#") {
		return u, errors.New("query parameters and fragments are not supported: every option has its own setting")
	}
	if p.hasUserinfo {
		var err error
		if u.Username, u.Password, err = parseUserinfo(p.userinfo); err != nil {
			return u, err
		}
	}
	hosts, path, _ := strings.Cut(p.rest, "/")
	if hosts == "" {
		return u, errors.New("the host is missing")
	}
	for hostport := range strings.SplitSeq(hosts, ",") {
		addr, err := parseHostPort(hostport, defaultPort)
		if err != nil {
			return u, err
		}
		u.Addrs = append(u.Addrs, addr)
	}
	switch u.Kind {
	case Standalone:
		if len(u.Addrs) > 1 {
			return u, fmt.Errorf("%s:// takes one host; for several use redis-sentinel:// or redis-cluster://", p.scheme)
		}
		if path != "" {
			db, err := strconv.Atoi(path)
			if err != nil || db < 0 {
				return u, fmt.Errorf("database %q is not a number 0 or above", path)
			}
			u.DB = db
		}
	case Sentinel:
		if path == "" {
			return u, errors.New("the master name is missing: want redis-sentinel://h1:26379,h2:26379/mastername")
		}
		if strings.Contains(path, "/") {
			return u, fmt.Errorf("master name %q holds a '/': want redis-sentinel://h1:26379,h2:26379/mastername", path)
		}
		u.MasterName = path
	case Cluster:
		if path != "" {
			return u, fmt.Errorf("path %q: a Redis Cluster has no databases, so the URL takes no path", "/"+path)
		}
	}
	return u, nil
}

// Mask returns raw with its password replaced by "****", read the way
// Parse reads it: "redis://user:pass@h" → "redis://user:****@h", the lone
// "redis-sentinel://pass@h1,h2/m" → "redis-sentinel://****@h1,h2/m". It
// masks what Parse refuses too: user information without a scheme, and
// the value of every query parameter (Parse takes none, so none is known
// to be harmless). A URL without a password is returned as it is.
func Mask(raw string) string {
	p := split(raw)
	var b strings.Builder
	if p.hasScheme {
		b.WriteString(p.scheme)
		b.WriteString("://")
	}
	if p.hasUserinfo {
		if user, _, hasColon := strings.Cut(p.userinfo, ":"); hasColon {
			b.WriteString(user)
			b.WriteString(":****@")
		} else {
			b.WriteString("****@")
		}
	}
	rest, fragment, hasFragment := strings.Cut(p.rest, "#")
	if path, query, hasQuery := strings.Cut(rest, "?"); hasQuery {
		params := strings.Split(query, "&")
		for i, param := range params {
			if name, _, hasValue := strings.Cut(param, "="); hasValue {
				params[i] = name + "=****"
			}
		}
		rest = path + "?" + strings.Join(params, "&")
	}
	b.WriteString(rest)
	if hasFragment {
		b.WriteString("#")
		b.WriteString(fragment)
	}
	return b.String()
}

// parts is a URL cut where Parse and Mask both cut it.
type parts struct {
	scheme      string
	hasScheme   bool
	userinfo    string // before the last '@'
	hasUserinfo bool
	rest        string // hosts, path and whatever follows
}

// split cuts raw at the first "://" (the scheme, when what precedes it
// looks like one) and then at the last '@' (the user information).
func split(raw string) parts {
	var p parts
	after := raw
	if scheme, rest, ok := strings.Cut(raw, "://"); ok && validScheme(scheme) {
		p.scheme, p.hasScheme, after = scheme, true, rest
	}
	if at := strings.LastIndex(after, "@"); at >= 0 {
		p.userinfo, p.hasUserinfo, after = after[:at], true, after[at+1:]
	}
	p.rest = after
	return p
}

// validScheme reports whether s has the syntax of a URL scheme (RFC 3986),
// so that a password holding "://" is never taken for, or echoed as, one.
func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// parseUserinfo reads "user:pass", ":pass" or "pass", percent-decoded.
func parseUserinfo(info string) (user, pass string, err error) {
	u, p, hasColon := strings.Cut(info, ":")
	if !hasColon {
		u, p = "", info
	}
	if user, err = url.PathUnescape(u); err != nil {
		return "", "", errors.New("the user name is not valid percent-encoding")
	}
	if pass, err = url.PathUnescape(p); err != nil {
		return "", "", errors.New("the password is not valid percent-encoding")
	}
	return user, pass, nil
}

func parseHostPort(hostport, defaultPort string) (string, error) {
	if hostport == "" {
		return "", errors.New("the host list has an empty entry")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		// No port given: take the default one.
		host, port = strings.Trim(hostport, "[]"), defaultPort
		if strings.Contains(host, ":") && !strings.HasPrefix(hostport, "[") {
			return "", fmt.Errorf("host %q: put an IPv6 address in brackets, like [::1]:6379", hostport)
		}
	}
	if host == "" {
		return "", fmt.Errorf("host %q: the host name is missing", hostport)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("host %q: port %q is not a number 1-65535", hostport, port)
	}
	return net.JoinHostPort(host, port), nil
}
