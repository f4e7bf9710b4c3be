package auth

import (
	"errors"
	"net/http"
)

// Error is a refused request: the HTTP status to answer, the check that
// failed (a stable problem type name) and words for the user. It never holds
// the token.
type Error struct {
	Status int
	Check  string
	Detail string
}

func (e *Error) Error() string { return "auth: " + e.Check + ": " + e.Detail }

// Is matches the sentinels by check, so callers may errors.Is(err, ErrMissing).
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Check == e.Check && t.Detail == ""
}

// The refusals callers branch on; each is also the Check of the Error returned.
var (
	// ErrMissing: no bearer token (401).
	ErrMissing = &Error{Status: http.StatusUnauthorized, Check: "token-missing"}
	// ErrNotGranted: a valid token that does not allow the action (403).
	ErrNotGranted = &Error{Status: http.StatusForbidden, Check: "not-granted"}
)

func refuse(status int, check, detail string) *Error {
	return &Error{Status: status, Check: check, Detail: detail}
}

func unauthorized(check, detail string) *Error {
	return refuse(http.StatusUnauthorized, check, detail)
}
