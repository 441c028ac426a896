// Package tools pins the release tools (goreleaser, nfpm, cyclonedx-gomod)
// as `go tool` dependencies of a module of their own, so they never enter
// Saga's go.mod, and tests that the two package definitions (nfpm.yaml and
// the nfpms section of .goreleaser.yaml) describe the same packages.
package tools
