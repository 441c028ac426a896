package auth

// Denial is why a request was refused: a reason for metrics and logs, and
// a message for the client.
type Denial struct {
	// Reason is a short snake_case word: missing_token, malformed_token,
	// unknown_token, expired_token, role, scope, protected_mode.
	Reason  string
	Message string
	// Forbidden is true for 403 (a known client that may not do this),
	// false for 401 (no valid token).
	Forbidden bool
}

func (d *Denial) Error() string { return d.Message }

// Denials for requests without a valid token (401).
var (
	ErrMissingToken   = &Denial{Reason: "missing_token", Message: "this request needs a token: send Authorization: Bearer saga_…"}
	ErrMalformedToken = &Denial{Reason: "malformed_token", Message: "the Authorization header is not Bearer followed by a saga_ token"}
	ErrUnknownToken   = &Denial{Reason: "unknown_token", Message: "the token is not known (revoked, or never created)"}
	ErrExpiredToken   = &Denial{Reason: "expired_token", Message: "the token has expired"}
)
