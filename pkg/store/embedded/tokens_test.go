package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/auth/authtest"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/registry/registrytest"
)

func TestTokenConformance(t *testing.T) {
	authtest.Run(t, func(t *testing.T) auth.Store {
		return openStore(t, t.TempDir())
	})
	// One process, so the "two handles" are one.
	authtest.RunShared(t, func(t *testing.T) (auth.Store, auth.Store) {
		s := openStore(t, t.TempDir())
		return s, s
	})
}

func TestTokensSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	tokens := make([]auth.Token, 3)
	for i := range tokens {
		tokens[i] = authtest.Token(t, fmt.Sprint("token ", i))
		if err := s.CreateToken(t.Context(), tokens[i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RevokeToken(t.Context(), tokens[0].Accessor); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListTokens(t.Context()); !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("ListTokens after Close = %v, want ErrUnavailable", err)
	}

	s = openStore(t, dir)
	wantTokens(t, s, tokens[1:]...)
	if err := s.BootstrapToken(t.Context(), authtest.Token(t, "late")); !errors.Is(err, auth.ErrBootstrapped) {
		t.Errorf("BootstrapToken after reopen = %v, want ErrBootstrapped", err)
	}
}

// A file written by a release without tokens opens, keeps its instances,
// and gains the tokens bucket.
func TestTokensBucketAddedToOlderFile(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(t.Context(), registrytest.Instance("web", "a", 60, t0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Make it the layout of format 1 before tokens: meta, services, instances.
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketTokens) })
	if cerr := db.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}

	s, err = Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open of a file without the tokens bucket: %v", err)
	}
	if web := mustSnapshot(t, s).Services["web"]; len(web.Instances) != 1 {
		t.Errorf("the older file's instances: %+v, want a", web)
	}
	wantTokens(t, s)
	tok := authtest.Token(t, "first")
	if err := s.BootstrapToken(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantTokens(t, openStore(t, dir), tok)
}

// A token write that the disk refuses answers ErrUnavailable and changes
// nothing: it is not listed, not signalled, and the store refuses changes
// until the probe finds the disk writable again. Should the failure have
// left the write in the file, the next token write takes it out.
func TestFailedTokenWriteIsNeverSeen(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		disk := &faultyDisk{}
		s, err := open(dir, slog.New(slog.DiscardHandler), options{
			flushInterval: time.Hour, probeInterval: time.Second,
			clock: registry.NewManualClock(t0), writeHook: disk.hook,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		kept := authtest.Token(t, "kept")
		if err := s.CreateToken(ctx, kept); err != nil {
			t.Fatal(err)
		}
		authtest.Drain(s)

		refused := authtest.Token(t, "refused")
		disk.failNext(1)
		if err := s.CreateToken(ctx, refused); !errors.Is(err, registry.ErrUnavailable) {
			t.Fatalf("CreateToken on a failing disk = %v, want ErrUnavailable", err)
		}
		wantTokens(t, s, kept)
		wantNoSignal(t, s)
		wantUnavailable(t, s)
		if err := s.CreateToken(ctx, authtest.Token(t, "while failed")); !errors.Is(err, registry.ErrUnavailable) {
			t.Errorf("CreateToken while writes fail = %v, want ErrUnavailable", err)
		}
		if _, err := s.RevokeToken(ctx, kept.Accessor); !errors.Is(err, registry.ErrUnavailable) {
			t.Errorf("RevokeToken while writes fail = %v, want ErrUnavailable", err)
		}

		time.Sleep(time.Second) // one probe, on a disk that takes writes again
		synctest.Wait()
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping after a probe = %v", err)
		}
		disk.failNext(1)
		if _, err := s.RevokeToken(ctx, kept.Accessor); !errors.Is(err, registry.ErrUnavailable) {
			t.Fatalf("RevokeToken on a failing disk = %v, want ErrUnavailable", err)
		}
		wantTokens(t, s, kept)
		wantNoSignal(t, s)
		time.Sleep(time.Second)
		synctest.Wait()

		// A failed commit can leave its write in the file (an I/O error on
		// fsync): pretend the refused create did.
		s.mu.Lock()
		db := s.db
		s.mu.Unlock()
		value, _, err := encodeToken(refused)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketTokens).Put([]byte(refused.Accessor), value) }); err != nil {
			t.Fatal(err)
		}
		wantTokens(t, s, kept)
		if err := s.BootstrapToken(ctx, authtest.Token(t, "bootstrap")); !errors.Is(err, auth.ErrBootstrapped) {
			t.Errorf("BootstrapToken = %v, want ErrBootstrapped", err)
		}
		after := authtest.Token(t, "after")
		if err := s.CreateToken(ctx, after); err != nil {
			t.Fatalf("CreateToken after recovery: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = open(dir, slog.New(slog.DiscardHandler), options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wantTokens(t, s, kept, after)
	})
}

// wantTokens checks that s lists exactly want, every field.
func wantTokens(t *testing.T, s *Store, want ...auth.Token) {
	t.Helper()
	list, err := s.ListTokens(t.Context())
	if err != nil {
		t.Fatalf("ListTokens: %v", err)
	}
	byAccessor := map[string]auth.Token{}
	for _, tok := range list {
		byAccessor[tok.Accessor] = tok
	}
	if len(list) != len(want) {
		t.Errorf("%d tokens listed, want %d", len(list), len(want))
	}
	for _, w := range want {
		got, ok := byAccessor[w.Accessor]
		if !ok {
			t.Errorf("token %q (%s) is not listed", w.Description, w.Accessor)
			continue
		}
		authtest.WantToken(t, got, w)
	}
}

func wantNoSignal(t *testing.T, s *Store) {
	t.Helper()
	select {
	case <-s.TokenChanges():
		t.Error("TokenChanges fired for a write that failed")
	default:
	}
}
