package redisstore

// Key names (docs/redis.md). Every key of one service carries the hash tag
// {name}, so a script that touches them all runs on one Cluster node.
// Service keys always hold a "{", so service:catalog and service:tokens
// can never be a service's.
const (
	catalogKey    = "service:catalog" // SET of service names, for Snapshot and expiry
	changeChannel = "service:changes" // pub/sub channel of change notices
	tokensKey     = "service:tokens"  // HASH accessor -> JSON of auth.Token (tokens.go)
)

// serviceKeys are the KEYS of every script, in the order scripts.go names.
func serviceKeys(service string) []string {
	prefix := "service:{" + service + "}:"
	return []string{prefix + "index", prefix + "instances", prefix + "state", prefix + "deadlines", prefix + "announced"}
}

// deadlinesKey is the sorted set of a service's deadlines (KEYS[4]).
func deadlinesKey(service string) string { return "service:{" + service + "}:deadlines" }

// noticeHead is ARGV[2] of every script: the start of its notices.
func noticeHead(origin, service string) string {
	return `{"origin":"` + origin + `","service":` + jsonString(service)
}

// serviceNames are a service's script keys and notice head, built once per
// service rather than at every heartbeat.
type serviceNames struct {
	keys []string
	head string
}

func newServiceNames(service, origin string) serviceNames {
	return serviceNames{keys: serviceKeys(service), head: noticeHead(origin, service)}
}
