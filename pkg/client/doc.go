// Package client is the Go client for Saga's HTTP API (/api/v1): register
// instances and keep them alive, look services up, wait for them to change
// with blocking queries, and follow the event stream. The saga command line
// uses it; other programs import it.
//
// API errors come back as *Error, which errors.As matches and errors.Is
// relates to registry.ErrNotFound and registry.ErrUnavailable. A server that
// cannot be reached gives an *UnreachableError naming its address.
//
// Subpackage grpcresolver resolves saga:///service targets for grpc-go; it
// is apart so that users of this package do not link grpc.
package client
