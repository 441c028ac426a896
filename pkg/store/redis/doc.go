// Package redis is the Saga store shared by several Saga processes: it keeps
// the registry in Redis (standalone, TLS, Sentinel or Cluster), makes every
// change atomically in a Lua script, and tells the other processes about it
// on a pub/sub channel. docs/redis.md describes the data layout.
package redis
