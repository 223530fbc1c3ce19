package esdev

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Error types Elasticsearch reports.
const (
	typeSecurity        = "security_exception"
	typeValidation      = "action_request_validation_exception"
	typeIllegalArgument = "illegal_argument_exception"
	typeParse           = "x_content_parse_exception"
)

// authenticateHeader lists the schemes Elasticsearch offers on a 401.
var authenticateHeader = []string{
	`Basic realm="security" charset="UTF-8"`,
	`Bearer realm="security"`,
	"ApiKey",
}

// esError is an error answer of a REST action.
type esError struct {
	status int
	typ    string
	reason string
}

func (e *esError) Error() string { return e.typ + ": " + e.reason }

// errorBody is the JSON of an esError.
type errorBody struct {
	Error struct {
		RootCause []errorCause        `json:"root_cause"`
		Type      string              `json:"type"`
		Reason    string              `json:"reason"`
		Header    map[string][]string `json:"header,omitempty"`
	} `json:"error"`
	Status int `json:"status"`
}

type errorCause struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// write writes e in Elasticsearch's shape. A 401 carries the schemes the
// server accepts, in the body and as WWW-Authenticate headers.
func (e *esError) write(w http.ResponseWriter) {
	var b errorBody
	b.Error.RootCause = []errorCause{{Type: e.typ, Reason: e.reason}}
	b.Error.Type, b.Error.Reason, b.Status = e.typ, e.reason, e.status
	if e.status == http.StatusUnauthorized {
		b.Error.Header = map[string][]string{"WWW-Authenticate": authenticateHeader}
		for _, v := range authenticateHeader {
			w.Header().Add("WWW-Authenticate", v)
		}
	}
	writeJSON(w, e.status, &b)
}

// unauthenticated returns a 401 security_exception.
func unauthenticated(format string, args ...any) *esError {
	return &esError{http.StatusUnauthorized, typeSecurity, fmt.Sprintf(format, args...)}
}

// badCredentials is the reason Elasticsearch gives when no realm accepts a
// token or an API key.
const badCredentials = "unable to authenticate with provided credentials and anonymous " +
	"access is not allowed for this request"

// forbidden returns the 403 Elasticsearch answers when p lacks the cluster
// privileges of action.
func forbidden(p *principal, a action) *esError {
	who := fmt.Sprintf("user [%s] with effective roles [%s]", p.username,
		strings.Join(p.roles, ","))
	if p.key != nil {
		who = fmt.Sprintf("API key id [%s] of user [%s]", p.key.id, p.username)
	}
	return &esError{http.StatusForbidden, typeSecurity, fmt.Sprintf(
		"action [%s] is unauthorized for %s, this action is granted by the cluster privileges [%s]",
		a.name, who, strings.Join(a.privileges, ","))}
}

// validation returns a 400 action_request_validation_exception listing
// problems as Elasticsearch does: "Validation Failed: 1: ...;2: ...;".
func validation(problems []string) *esError {
	var b strings.Builder
	b.WriteString("Validation Failed: ")
	for i, p := range problems {
		fmt.Fprintf(&b, "%d: %s;", i+1, p)
	}
	return &esError{http.StatusBadRequest, typeValidation, b.String()}
}

// illegalArgument returns a 400 illegal_argument_exception.
func illegalArgument(format string, args ...any) *esError {
	return &esError{http.StatusBadRequest, typeIllegalArgument, fmt.Sprintf(format, args...)}
}

// parseError returns a 400 x_content_parse_exception for a body that does
// not parse as the request object.
func parseError(object, format string, args ...any) *esError {
	return &esError{http.StatusBadRequest, typeParse,
		fmt.Sprintf("[%s] ", object) + fmt.Sprintf(format, args...)}
}

// writeRESTError writes an error of the REST layer, which Elasticsearch
// reports as a plain string: {"error": "...", "status": N}.
func writeRESTError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": msg, "status": status})
}

// writeMethodNotAllowed answers a method the path does not serve.
func writeMethodNotAllowed(w http.ResponseWriter, r *http.Request, allowed []string) {
	w.Header().Set("Allow", strings.Join(allowed, ","))
	writeRESTError(w, http.StatusMethodNotAllowed, fmt.Sprintf(
		"Incorrect HTTP method for uri [%s] and method [%s], allowed: [%s]",
		r.URL.Path, r.Method, strings.Join(allowed, ", ")))
}

// checkParams rejects query parameters the action does not know, as
// Elasticsearch does.
func checkParams(r *http.Request, known ...string) *esError {
	common := []string{"pretty", "human", "error_trace", "filter_path"}
	var unknown []string
	for p := range r.URL.Query() {
		if !slices.Contains(known, p) && !slices.Contains(common, p) {
			unknown = append(unknown, p)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	return illegalArgument("request [%s] contains unrecognized parameter%s: [%s]", r.URL.Path,
		plural(len(unknown)), strings.Join(unknown, ", "))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
