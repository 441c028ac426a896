// Package auth is Saga's access control (SPEC §6): tokens with a role, an
// optional service scope and an optional expiry, kept by the store as
// SHA-256 hashes of their secrets and held in memory by Tokens, so that
// checking a request's token costs no store round trip.
package auth
