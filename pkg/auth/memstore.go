package auth

import (
	"context"
	"sync"
)

// MemoryStore keeps tokens in memory only, for a server whose registry
// store keeps none (a test stand-in); tokens are lost when it stops.
type MemoryStore struct {
	mu      sync.Mutex
	tokens  map[string]Token
	changes chan struct{}
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{tokens: map[string]Token{}, changes: make(chan struct{}, 1)}
}

// CreateToken stores t.
func (m *MemoryStore) CreateToken(_ context.Context, t Token) error {
	m.mu.Lock()
	m.tokens[t.Accessor] = t
	m.mu.Unlock()
	m.changed()
	return nil
}

// BootstrapToken stores t while no token exists.
func (m *MemoryStore) BootstrapToken(_ context.Context, t Token) error {
	m.mu.Lock()
	if len(m.tokens) > 0 {
		m.mu.Unlock()
		return ErrBootstrapped
	}
	m.tokens[t.Accessor] = t
	m.mu.Unlock()
	m.changed()
	return nil
}

// RevokeToken removes the token with that accessor.
func (m *MemoryStore) RevokeToken(_ context.Context, accessor string) (Token, error) {
	m.mu.Lock()
	t, ok := m.tokens[accessor]
	delete(m.tokens, accessor)
	m.mu.Unlock()
	if !ok {
		return Token{}, ErrTokenNotFound
	}
	m.changed()
	return t, nil
}

// ListTokens returns every token.
func (m *MemoryStore) ListTokens(context.Context) ([]Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	list := make([]Token, 0, len(m.tokens))
	for _, t := range m.tokens {
		list = append(list, t)
	}
	return list, nil
}

// TokenChanges signals after each change.
func (m *MemoryStore) TokenChanges() <-chan struct{} { return m.changes }

func (m *MemoryStore) changed() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}
