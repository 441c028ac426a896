package authtest_test

import (
	"testing"

	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/auth/authtest"
)

// The memory store passes too, and its "two handles" are one: this proves
// the suite's own logic without a real store.
func TestMemoryStore(t *testing.T) {
	authtest.Run(t, func(*testing.T) auth.Store { return auth.NewMemoryStore() })
	authtest.RunShared(t, func(*testing.T) (auth.Store, auth.Store) {
		s := auth.NewMemoryStore()
		return s, s
	})
}
