// Package redisstore is the Saga store shared by several Saga processes: it
// keeps the registry in Redis (standalone, TLS, Sentinel or Cluster), makes
// every change atomically in a Lua script, and tells the other processes
// about it on a pub/sub channel. docs/redis.md describes the data layout.
//
// It is named redisstore, not redis, so that it never shadows go-redis's
// package redis in the files that use both.
//
// Its files: store.go (the registry.Store methods), batch.go (concurrent
// writes sharing round trips), options.go and
// client.go (Options, and the go-redis client and TLS built from them),
// keys.go (key names), scripts.go (the Lua scripts), wire.go and
// shortnotice.go (records and change notices as Redis holds and publishes
// them), recordcache.go (the records this process has decoded),
// changefeed.go (the subscriber and the Changes feed), monitor.go (the
// connection monitor: outages, reconnection, grace), due.go (which
// services may have something to expire), pull.go (the deadlines
// delivered, and the loop that pulls later ones from Redis instead of
// being told of every heartbeat), membership.go (the Sagas on one Redis,
// and whether all of them pull) and tokens.go (the auth.Store
// methods: tokens in one hash, with their own scripts and notice). Package redisurl holds the
// grammar of Redis URLs, which the configuration checks with too.
package redisstore
