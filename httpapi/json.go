package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deputyhq/deputy"
)

// statusOf maps error codes to HTTP statuses.
var statusOf = map[string]int{
	deputy.EINVALID:      http.StatusBadRequest,
	deputy.EUNAUTHORIZED: http.StatusUnauthorized,
	deputy.EFORBIDDEN:    http.StatusForbidden,
	deputy.ENOTFOUND:     http.StatusNotFound,
	deputy.ECONFLICT:     http.StatusConflict,
	deputy.EUNAVAILABLE:  http.StatusServiceUnavailable,
	deputy.EINTERNAL:     http.StatusInternalServerError,
}

// Status returns the HTTP status of an error code: 400 for invalid, 401
// unauthorized, 403 forbidden, 404 not_found, 409 conflict, 503 unavailable,
// and 500 for internal and unknown codes.
func Status(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// errorBody is the JSON form of an error.
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// statusError is a domain error reported with a status of its own, such as
// 413 or 405, rather than its code's.
type statusError struct {
	status int
	err    *deputy.Error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

func withStatus(status int, err *deputy.Error) error {
	return &statusError{status: status, err: err}
}

// publicError returns the code and message of err that API users may see.
// Internal errors read "internal error". The context wrapped around a domain
// error, such as "task 3: ", is kept in front of its message.
func publicError(err error) errorBody {
	var e *deputy.Error
	if !errors.As(err, &e) || e.Code == deputy.EINTERNAL {
		return errorBody{Code: deputy.EINTERNAL, Message: "internal error"}
	}
	msg := e.Message
	if full := err.Error(); strings.HasSuffix(full, e.Error()) {
		msg = strings.TrimSuffix(full, e.Error()) + msg
	}
	return errorBody{Code: e.Code, Message: msg}
}

// statusFor returns the HTTP status err is reported with.
func statusFor(err error) int {
	if se, ok := errors.AsType[*statusError](err); ok {
		return se.status
	}
	return Status(deputy.ErrorCode(err))
}

// writeError writes err as a JSON error. Internal errors are logged with
// the request's method and path; their details never reach the response.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	body := publicError(err)
	status := statusFor(err)
	if body.Code == deputy.EINTERNAL {
		s.log.Error("request failed",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Any("error", err))
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="deputy", charset="UTF-8"`)
		w.Header().Add("WWW-Authenticate", `Bearer realm="deputy"`)
		w.Header().Add("WWW-Authenticate", `ApiKey`)
	}
	s.writeJSON(w, r, status, struct {
		Error errorBody `json:"error"`
	}{body})
}

// writeJSON writes v as the JSON response with the given status.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("encode response: %w", err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// The client may have gone; there is nobody left to tell.
	_, _ = w.Write(append(b, '\n'))
}

// decode reads the request body into v strictly: one JSON value, no
// unknown fields, at most the configured size.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return s.decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return s.decodeError(err)
		}
		return deputy.Errorf(deputy.EINVALID,
			"malformed JSON: unexpected data after the JSON value at offset %d", dec.InputOffset())
	}
	return nil
}

// decodeError turns a JSON decoding error into an EINVALID error whose
// message names the problem and, where known, its field or offset.
func (s *Server) decodeError(err error) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		tooBig *http.MaxBytesError
		parse  *time.ParseError
		de     *deputy.Error
	)
	switch {
	case errors.As(err, &tooBig):
		return withStatus(http.StatusRequestEntityTooLarge,
			deputy.Errorf(deputy.EINVALID, "request body exceeds %d bytes", tooBig.Limit))
	case errors.Is(err, io.EOF):
		return deputy.Errorf(deputy.EINVALID, "request body is empty: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return deputy.Errorf(deputy.EINVALID, "malformed JSON: the request body ends too early")
	case errors.As(err, &syntax):
		return deputy.Errorf(deputy.EINVALID, "malformed JSON at offset %d: %s",
			syntax.Offset, syntax.Error())
	case errors.As(err, &typ) && typ.Field == "":
		return deputy.Errorf(deputy.EINVALID, "request body must be a JSON object, not %s",
			typ.Value)
	case errors.As(err, &typ):
		return deputy.Errorf(deputy.EINVALID, "field %q must be %s, not %s (at offset %d)",
			jsonPath(typ.Field), jsonType(typ.Type), typ.Value, typ.Offset)
	case errors.As(err, &de):
		return err
	case errors.As(err, &parse):
		return deputy.Errorf(deputy.EINVALID,
			"invalid time %q: want RFC 3339, such as 2026-01-02T15:04:05Z", truncate(parse.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return deputy.Errorf(deputy.EINVALID, "%s", strings.TrimPrefix(err.Error(), "json: "))
	default:
		return deputy.Errorf(deputy.EINVALID, "malformed JSON: %s",
			truncate(strings.TrimPrefix(err.Error(), "json: ")))
	}
}

// jsonPath drops the Go names of embedded structs, such as NewTask, from
// the field path of a decoding error.
func jsonPath(field string) string {
	parts := strings.Split(field, ".")
	out := parts[:0]
	for _, p := range parts {
		if p != "NewTask" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}

var timeType = reflect.TypeFor[time.Time]()

// jsonType names the JSON type a Go type decodes from.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType || t == reflect.TypeFor[runAt]():
		return "an RFC 3339 time string"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "a boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}

// truncate shortens a value echoed in an error message.
func truncate(s string) string {
	const limit = 100
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// runAt reads a run_at field and names it when the value is not a time.
type runAt time.Time

// UnmarshalJSON implements [json.Unmarshaler].
func (t *runAt) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return deputy.Errorf(deputy.EINVALID,
			"field \"run_at\" must be an RFC 3339 time string, such as 2026-01-02T15:04:05Z")
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return deputy.Errorf(deputy.EINVALID,
			"field \"run_at\": %q is not an RFC 3339 time, such as 2026-01-02T15:04:05Z",
			truncate(s))
	}
	*t = runAt(v)
	return nil
}
