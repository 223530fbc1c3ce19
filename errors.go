package deputy

import (
	"errors"
	"fmt"
	"time"
)

// Error codes carried by [Error]. The HTTP API maps them to status codes and
// the CLI to exit codes.
const (
	EINVALID      = "invalid"
	ENOTFOUND     = "not_found"
	ECONFLICT     = "conflict"
	EUNAUTHORIZED = "unauthorized"
	EFORBIDDEN    = "forbidden"
	EUNAVAILABLE  = "unavailable"
	EINTERNAL     = "internal"
)

// Error is deputy's domain error: a machine-readable code and a message that
// is safe to show to API users.
type Error struct {
	Code    string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("deputy: %s: %s", e.Code, e.Message)
}

// Errorf returns an [Error] with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first [Error] in err's chain, or
// [EINTERNAL] when there is none. A nil error has an empty code.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}

// ErrorMessage returns the message of the first [Error] in err's chain, or a
// generic message for internal errors, whose details must not reach users.
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	default:
		return "internal error"
	}
}

// ErrShutdown is the cause of a run context cancelled because the manager is
// stopping.
var ErrShutdown = errors.New("deputy: manager is shutting down")

// ErrTimeout is the cause of a run context cancelled because the run exceeded
// its timeout.
var ErrTimeout = errors.New("deputy: task run timed out")

// RetryableError marks a run failure that should be retried at a given time,
// or not at all.
type RetryableError struct {
	Err error
	// At is when to retry. The zero value means the default backoff.
	At time.Time
	// Never, when set, means the failure must not be retried.
	Never bool
}

// Error implements the error interface.
func (e *RetryableError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *RetryableError) Unwrap() error { return e.Err }

// RetryAt wraps err so that the task is retried at t instead of after the
// default backoff. A zero t means the default backoff.
func RetryAt(err error, t time.Time) error {
	return &RetryableError{Err: err, At: t}
}

// UnrecoverableError marks a run failure that must never be retried. The task
// is removed, even when it is recurring.
type UnrecoverableError struct {
	Err error
}

// Error implements the error interface.
func (e *UnrecoverableError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *UnrecoverableError) Unwrap() error { return e.Err }

// Unrecoverable wraps err so that the task is removed instead of retried.
func Unrecoverable(err error) error {
	return &UnrecoverableError{Err: err}
}
