package registry

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrBadDuration is what ParseDuration refuses; callers name the field.
var ErrBadDuration = errors.New("not a duration: use whole seconds (60) or a unit (60s, 2m, 1m30s)")

// ParseDuration reads a duration as every layer of Saga writes it: a bare
// number of whole seconds ("60") or a Go duration ("60s", "2m", "1m30s").
// Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > math.MaxInt64/int64(time.Second) {
			return 0, ErrBadDuration
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, ErrBadDuration
	}
	return d, nil
}
