package redisstore

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 2 * time.Second, 2 * time.Second}
	for step, w := range want {
		if got := backoff(step); got != w {
			t.Errorf("backoff(%d) = %s, want %s", step, got, w)
		}
	}
	if got := backoff(1000); got != maxBackoff {
		t.Errorf("backoff(1000) = %s, want the cap %s", got, maxBackoff)
	}
}
