// Package authtest is the conformance suite that every auth.Store passes. A
// store's own tests call Run with a factory for fresh stores that hold no
// token:
//
//	func TestTokenConformance(t *testing.T) {
//		authtest.Run(t, func(t *testing.T) auth.Store {
//			s, err := embedded.Open(t.TempDir(), slog.New(slog.DiscardHandler))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// A store that several Saga processes share runs RunShared too. Times are
// whole seconds, as auth.Tokens makes them, and are compared with
// time.Time.Equal.
package authtest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/auth"
)

// T0 is the creation time of the suite's tokens: whole seconds, UTC.
var T0 = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

// changeTimeout bounds the wait for a TokenChanges signal from the store
// itself. It is not a speed goal: it only keeps a broken store from
// hanging the suite.
const changeTimeout = 10 * time.Second

// sharedTimeout is how soon another process's change must be signalled
// (SPEC §6: a new or revoked token takes effect everywhere within 1 s).
const sharedTimeout = time.Second

// Run runs the conformance suite. newStore returns a fresh store holding no
// token for each subtest and registers its own cleanup (t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) auth.Store) {
	tests := []struct {
		name string
		test func(t *testing.T, s auth.Store)
	}{
		{"TokenListEmpty", testListEmpty},
		{"TokenCreateAndList", testCreateAndList},
		{"TokenRevoke", testRevoke},
		{"TokenRevokeUnknown", testRevokeUnknown},
		{"TokenBootstrap", testBootstrap},
		{"TokenConcurrentBootstraps", testConcurrentBootstraps},
		{"TokenChanges", testChanges},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.test(t, newStore(t)) })
	}
}

// Token returns a token with every field set, of role admin, scoped to
// services "web" and "payments-*", expiring 30 days after T0. Its
// accessor and hash are random.
func Token(t testing.TB, description string) auth.Token {
	t.Helper()
	secret, err := auth.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	accessor, err := auth.NewAccessor()
	if err != nil {
		t.Fatal(err)
	}
	return auth.Token{
		Accessor:    accessor,
		SecretHash:  auth.HashSecret(secret),
		Description: description,
		Role:        auth.RoleAdmin,
		Services:    []string{"web", "payments-*"},
		CreatedAt:   T0,
		ExpiresAt:   T0.Add(30 * 24 * time.Hour),
	}
}

func testListEmpty(t *testing.T, s auth.Store) {
	if list := mustList(t, s); len(list) != 0 {
		t.Errorf("a fresh store lists %d tokens, want none", len(list))
	}
}

func testCreateAndList(t *testing.T, s auth.Store) {
	full := Token(t, "deploy bot: écrit, \"quoted\"")
	// The optional fields left empty: no description, scope or expiry.
	bare := Token(t, "")
	bare.Role, bare.Services, bare.ExpiresAt = auth.RoleRead, nil, time.Time{}
	mustCreate(t, s, full)
	mustCreate(t, s, bare)

	list := mustList(t, s)
	if len(list) != 2 {
		t.Fatalf("after two creates: %d tokens, want 2", len(list))
	}
	WantToken(t, find(t, list, full.Accessor), full)
	WantToken(t, find(t, list, bare.Accessor), bare)
}

func testRevoke(t *testing.T, s auth.Store) {
	keep, gone := Token(t, "keep"), Token(t, "gone")
	mustCreate(t, s, keep)
	mustCreate(t, s, gone)

	got, err := s.RevokeToken(t.Context(), gone.Accessor)
	if err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	WantToken(t, got, gone)
	list := mustList(t, s)
	if len(list) != 1 || list[0].Accessor != keep.Accessor {
		t.Errorf("after revoking %s: %v, want only %s", gone.Accessor, accessors(list), keep.Accessor)
	}
	if _, err := s.RevokeToken(t.Context(), gone.Accessor); !errors.Is(err, auth.ErrTokenNotFound) {
		t.Errorf("revoking %s again = %v, want ErrTokenNotFound", gone.Accessor, err)
	}
}

func testRevokeUnknown(t *testing.T, s auth.Store) {
	mustCreate(t, s, Token(t, "other"))
	unknown, err := auth.NewAccessor()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeToken(t.Context(), unknown); !errors.Is(err, auth.ErrTokenNotFound) {
		t.Errorf("RevokeToken of an unknown accessor = %v, want ErrTokenNotFound", err)
	}
	if list := mustList(t, s); len(list) != 1 {
		t.Errorf("a failed revoke left %d tokens, want 1", len(list))
	}
}

func testBootstrap(t *testing.T, s auth.Store) {
	first := Token(t, "bootstrap token")
	if err := s.BootstrapToken(t.Context(), first); err != nil {
		t.Fatalf("BootstrapToken on a store without tokens: %v", err)
	}
	if err := s.BootstrapToken(t.Context(), Token(t, "second")); !errors.Is(err, auth.ErrBootstrapped) {
		t.Errorf("a second BootstrapToken = %v, want ErrBootstrapped", err)
	}
	list := mustList(t, s)
	if len(list) != 1 {
		t.Fatalf("after bootstrap: %v, want only %s", accessors(list), first.Accessor)
	}
	WantToken(t, list[0], first)

	// Any token counts, not only a bootstrapped one.
	mustCreate(t, s, Token(t, "created"))
	if _, err := s.RevokeToken(t.Context(), first.Accessor); err != nil {
		t.Fatal(err)
	}
	if err := s.BootstrapToken(t.Context(), Token(t, "third")); !errors.Is(err, auth.ErrBootstrapped) {
		t.Errorf("BootstrapToken while a created token exists = %v, want ErrBootstrapped", err)
	}
}

// Eight Sagas run `saga token bootstrap` at once: exactly one wins.
func testConcurrentBootstraps(t *testing.T, s auth.Store) {
	const n = 8
	tokens := make([]auth.Token, n)
	errs := make([]error, n)
	for i := range n {
		tokens[i] = Token(t, fmt.Sprint("bootstrap ", i))
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = s.BootstrapToken(t.Context(), tokens[i]) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("bootstraps %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, auth.ErrBootstrapped):
			t.Errorf("bootstrap %d = %v, want nil or ErrBootstrapped", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no bootstrap succeeded")
	}
	list := mustList(t, s)
	if len(list) != 1 || list[0].Accessor != tokens[winner].Accessor {
		t.Errorf("after the race: %v, want only the winner %s", accessors(list), tokens[winner].Accessor)
	}
}

// Each kind of write is signalled, so that auth.Tokens lists again.
func testChanges(t *testing.T, s auth.Store) {
	first, second := Token(t, "first"), Token(t, "second")
	writes := []struct {
		name  string
		write func() error
	}{
		{"BootstrapToken", func() error { return s.BootstrapToken(t.Context(), first) }},
		{"CreateToken", func() error { return s.CreateToken(t.Context(), second) }},
		{"RevokeToken", func() error { _, err := s.RevokeToken(t.Context(), first.Accessor); return err }},
	}
	for _, w := range writes {
		Drain(s)
		if err := w.write(); err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		WaitChange(t, s, changeTimeout, "after "+w.name)
	}
}

// RunShared runs the tests for a store that several Saga processes share
// (Redis): newPair returns two handles on one store holding no token, as
// two processes would open it, and registers their cleanup. A token created
// or revoked through either handle is listed, or gone, through the other
// at once, and the other's TokenChanges fires within a second.
func RunShared(t *testing.T, newPair func(t *testing.T) (a, b auth.Store)) {
	tests := []struct {
		name string
		test func(t *testing.T, a, b auth.Store)
	}{
		{"TokenSeeEachOther", testSharedSeeEachOther},
		{"TokenBootstrapOnce", testSharedBootstrapOnce},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newPair(t)
			tt.test(t, a, b)
		})
	}
}

func testSharedSeeEachOther(t *testing.T, a, b auth.Store) {
	for _, dir := range []struct {
		name     string
		from, to auth.Store
	}{{"a to b", a, b}, {"b to a", b, a}} {
		tok := Token(t, dir.name)
		Drain(dir.to)
		mustCreate(t, dir.from, tok)
		WaitChange(t, dir.to, sharedTimeout, dir.name+": after a create through the other handle")
		WantToken(t, find(t, mustList(t, dir.to), tok.Accessor), tok)

		Drain(dir.to)
		if _, err := dir.from.RevokeToken(t.Context(), tok.Accessor); err != nil {
			t.Fatalf("%s: RevokeToken: %v", dir.name, err)
		}
		WaitChange(t, dir.to, sharedTimeout, dir.name+": after a revoke through the other handle")
		if list := mustList(t, dir.to); slices.Contains(accessors(list), tok.Accessor) {
			t.Errorf("%s: %s is still listed after its revocation", dir.name, tok.Accessor)
		}
	}
}

func testSharedBootstrapOnce(t *testing.T, a, b auth.Store) {
	tok := Token(t, "bootstrap token")
	if err := a.BootstrapToken(t.Context(), tok); err != nil {
		t.Fatalf("bootstrap through a: %v", err)
	}
	if err := b.BootstrapToken(t.Context(), Token(t, "second")); !errors.Is(err, auth.ErrBootstrapped) {
		t.Errorf("bootstrap through b after a's = %v, want ErrBootstrapped", err)
	}
	if _, err := b.RevokeToken(t.Context(), tok.Accessor); err != nil {
		t.Errorf("b revoking a's bootstrap token: %v", err)
	}
}

// Drain empties s's TokenChanges, so that the next signal is a new one.
func Drain(s auth.Store) {
	for {
		select {
		case <-s.TokenChanges():
		default:
			return
		}
	}
}

// WaitChange fails the test unless s's TokenChanges fires within timeout.
func WaitChange(t testing.TB, s auth.Store, timeout time.Duration, what string) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-s.TokenChanges():
	case <-timer.C:
		t.Fatalf("%s: no signal on TokenChanges within %v", what, timeout)
	}
}

// WantToken compares every field; times with Equal, empty and nil scopes
// alike.
func WantToken(t testing.TB, got, want auth.Token) {
	t.Helper()
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("token %s: created %v, expires %v; want %v, %v", want.Accessor, got.CreatedAt, got.ExpiresAt, want.CreatedAt, want.ExpiresAt)
	}
	if got.Accessor != want.Accessor || got.SecretHash != want.SecretHash || got.Description != want.Description ||
		got.Role != want.Role || !slices.Equal(got.Services, want.Services) {
		t.Errorf("token:\n got %+v\nwant %+v", got, want)
	}
}

func mustCreate(t *testing.T, s auth.Store, tok auth.Token) {
	t.Helper()
	if err := s.CreateToken(t.Context(), tok); err != nil {
		t.Fatalf("CreateToken %s: %v", tok.Accessor, err)
	}
}

func mustList(t *testing.T, s auth.Store) []auth.Token {
	t.Helper()
	list, err := s.ListTokens(t.Context())
	if err != nil {
		t.Fatalf("ListTokens: %v", err)
	}
	return list
}

// find returns the token with accessor from list, failing the test if
// there is none.
func find(t *testing.T, list []auth.Token, accessor string) auth.Token {
	t.Helper()
	for _, tok := range list {
		if tok.Accessor == accessor {
			return tok
		}
	}
	t.Fatalf("token %s is not listed (have %v)", accessor, accessors(list))
	return auth.Token{}
}

func accessors(list []auth.Token) []string {
	out := make([]string, len(list))
	for i, tok := range list {
		out[i] = tok.Accessor
	}
	slices.Sort(out)
	return out
}
