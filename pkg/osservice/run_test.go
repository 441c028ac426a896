package osservice

import (
	"context"
	"errors"
	"runtime"
	"testing"
)

func TestRunManagedOutsideWindowsCallsServe(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("on Windows RunManaged talks to the service manager")
	}
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "mine")
	boom := errors.New("boom")
	err := RunManaged(ctx, "saga", func(got context.Context) error {
		if got.Value(key{}) != "mine" {
			t.Error("serve did not get the caller's context")
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("RunManaged = %v, want serve's error", err)
	}
}
