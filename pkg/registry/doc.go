// Package registry is Saga's domain: what an instance is, which input is
// valid, how TTLs expire, and the Store interface that every storage backend
// implements. It imports no other Saga package.
package registry
