package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"
)

// A server that restarts (systemctl restart, a package upgrade) ends its
// blocking queries and event streams with 503 and Retry-After, and may
// break a connection that was waiting. Callers that were waiting anyway ask
// again, with the same index, for up to restartGrace.
const restartGrace = 30 * time.Second

// maxRetryPause caps the pause between two tries, whatever Retry-After says.
const maxRetryPause = 2 * time.Second

// retryable returns how long to pause before asking again when err is what
// a restarting server answers: 503 (with its Retry-After), or no answer at
// all.
func retryable(err error) (time.Duration, bool) {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		if apiErr.Status != http.StatusServiceUnavailable {
			return 0, false
		}
		return min(max(apiErr.RetryAfter, 100*time.Millisecond), maxRetryPause), true
	}
	var unreachable *UnreachableError
	if errors.As(err, &unreachable) {
		return 200 * time.Millisecond, true
	}
	return 0, false
}

// retryRestart calls call until it succeeds, fails for another reason than
// a restart, ctx ends, or restartGrace has passed since the first failure.
func retryRestart(ctx context.Context, call func() error) error {
	var deadline time.Time
	for {
		err := call()
		pause, ok := retryable(err)
		if err == nil || !ok || ctx.Err() != nil {
			return err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(restartGrace)
		}
		if time.Now().Add(pause).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}

// get reads path into out; a blocking query asks again through a restart,
// with the same index, so the caller keeps its place.
func (c *Client) get(ctx context.Context, path string, q url.Values, blocking bool, out any) (reply, error) {
	var r reply
	call := func() (err error) {
		r, err = c.call(ctx, http.MethodGet, path, q, nil, out)
		return err
	}
	if !blocking {
		return r, call()
	}
	return r, retryRestart(ctx, call)
}
