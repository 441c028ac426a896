package grpcresolver

import (
	"errors"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/client"
)

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n        int
		err      error
		min, max time.Duration
	}{
		{1, errors.New("refused"), minBackoff / 2, minBackoff},
		{3, errors.New("refused"), 2 * minBackoff, 4 * minBackoff},
		{12, errors.New("refused"), maxBackoff / 2, maxBackoff},
		{1000, errors.New("refused"), maxBackoff / 2, maxBackoff},
		{1, &client.Error{Status: 429, Code: client.CodeRateLimited, RetryAfter: 5 * time.Second}, 5 * time.Second, 5 * time.Second},
	} {
		for range 20 {
			if d := backoff(tc.n, tc.err); d < tc.min || d > tc.max {
				t.Errorf("backoff(%d, %v) = %v, want %v to %v", tc.n, tc.err, d, tc.min, tc.max)
			}
		}
	}
}
