package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/deputyhq/deputy"
)

// isCode reports whether err is a PostgreSQL error with one of the given
// SQLSTATE codes.
func isCode(err error, codes ...string) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	for _, c := range codes {
		if pe.Code == c {
			return true
		}
	}
	return false
}

// unavailableError marks a failure to reach the database. It unwraps to its
// cause and reads as a [deputy.Error] with code [deputy.EUNAVAILABLE], so
// callers can back off and the API can answer 503 without showing the cause.
type unavailableError struct {
	err error
}

func (e *unavailableError) Error() string { return "database unavailable: " + e.err.Error() }

func (e *unavailableError) Unwrap() error { return e.err }

// As lets errors.As find a [deputy.Error] in the chain.
func (e *unavailableError) As(target any) bool {
	t, ok := target.(**deputy.Error)
	if ok {
		*t = deputy.Errorf(deputy.EUNAVAILABLE, "database unavailable")
	}
	return ok
}

// wrapErr marks errors that mean the database could not be reached. Others
// are returned unchanged.
func wrapErr(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08 is connection exceptions, 57P0x the server shutting down
		// or terminating the session, 53 insufficient resources.
		if strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P0") ||
			strings.HasPrefix(pe.Code, "53") {
			return &unavailableError{err: err}
		}
		return err
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	if errors.As(err, &ne) || errors.As(err, &ce) || pgconn.SafeToRetry(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF) {
		return &unavailableError{err: err}
	}
	return err
}
