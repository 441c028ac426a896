package registry

import (
	"errors"
	"fmt"
)

// Sentinel errors that stores return and the API maps to statuses.
var (
	// ErrNotFound: the instance is unknown or has already expired.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the backing store cannot be reached; reads may still be
	// served from memory, writes are refused.
	ErrUnavailable = errors.New("store unavailable")
)

// FieldError is invalid input, naming the request field at fault.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Message) }
