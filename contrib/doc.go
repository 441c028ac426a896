// Package contrib holds no code: it is the module of the tests that prove
// the example deployments in this directory (compose file, Kubernetes
// manifests, Prometheus and nginx configuration) parse into their real types.
// It is a module of its own so that k8s.io/api and compose-go stay out of
// Saga's dependencies.
package contrib
