//go:build !unix

package server

// descriptorLimit: there is no such limit to read here, so the connection
// budget is only what limits.max_connections sets.
func descriptorLimit() (int, bool) { return 0, false }
