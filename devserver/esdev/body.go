package esdev

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// typeParseException is the type of Elasticsearch's generic parse errors.
const typeParseException = "parse_exception"

// object is a parsed JSON request object whose fields are checked against
// what the action knows, as Elasticsearch's strict parsers do.
type object struct {
	name   string // the parser's name, as Elasticsearch reports it
	fields map[string]json.RawMessage
}

// parseObject parses body as the JSON object the parser name reads, with
// fields among known. An empty body is an error unless optional.
func parseObject(body []byte, name string, optional bool, known ...string) (*object, *esError) {
	o := &object{name: name, fields: map[string]json.RawMessage{}}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return o, nil
		}
		return nil, &esError{http.StatusBadRequest, typeParseException, "request body is required"}
	}
	if err := json.Unmarshal(body, &o.fields); err != nil {
		return nil, parseError(name, "request body is not a JSON object")
	}
	return o, o.checkFields(known)
}

// checkFields rejects a field that is not among known.
func (o *object) checkFields(known []string) *esError {
	for f := range o.fields {
		if !slices.Contains(known, f) {
			return parseError(o.name, "unknown field [%s]", f)
		}
	}
	return nil
}

// has reports whether field is present and not null.
func (o *object) has(field string) bool {
	v, ok := o.fields[field]
	return ok && string(v) != "null"
}

// decode decodes field into v, if present.
func (o *object) decode(field string, v any) *esError {
	if !o.has(field) {
		return nil
	}
	if err := json.Unmarshal(o.fields[field], v); err != nil {
		return parseError(o.name, "failed to parse field [%s]", field)
	}
	return nil
}

// str returns a string field, empty when absent.
func (o *object) str(field string) (string, *esError) {
	var s string
	return s, o.decode(field, &s)
}

// sub parses an object-valued field with fields among known.
func (o *object) sub(field, name string, known ...string) (*object, *esError) {
	s := &object{name: name, fields: map[string]json.RawMessage{}}
	if !o.has(field) {
		return s, nil
	}
	if err := json.Unmarshal(o.fields[field], &s.fields); err != nil {
		return nil, parseError(o.name, "failed to parse field [%s]", field)
	}
	return s, s.checkFields(known)
}

var timeValue = regexp.MustCompile(`^(\d+)(nanos|micros|ms|s|m|h|d)$`)

// parseTimeValue parses an Elasticsearch time value such as "1d" or "30m".
func parseTimeValue(setting, v string) (time.Duration, *esError) {
	m := timeValue.FindStringSubmatch(v)
	n, err := strconv.ParseInt(safeIndex(m, 1), 10, 64)
	if m == nil || err != nil {
		return 0, &esError{http.StatusBadRequest, typeParseException,
			"failed to parse setting [" + setting + "] with value [" + v +
				"] as a time value: unit is missing or unrecognized"}
	}
	unit := map[string]time.Duration{
		"nanos": time.Nanosecond, "micros": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour,
	}[m[2]]
	return time.Duration(n) * unit, nil
}

func safeIndex(ss []string, i int) string {
	if i < len(ss) {
		return ss[i]
	}
	return ""
}
