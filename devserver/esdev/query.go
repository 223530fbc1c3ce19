package esdev

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// maxResultWindow caps from + size, as in Elasticsearch.
const maxResultWindow = 10_000

// predicate is a compiled query.
type predicate func(k *apiKey) bool

// handleQuery serves GET|POST /_security/_query/api_key. Users without
// read_security or manage_api_key see only their own keys.
func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request) {
	p, e := s.authenticate(r)
	if e == nil {
		e = checkParams(r, "with_limited_by", "with_profile_uid", "typed_keys")
	}
	var o *object
	if e == nil {
		body, err := readBody(r)
		if err != nil {
			e = parseError("query_api_key_request", "unreadable body")
		} else {
			o, e = parseObject(body, "query_api_key_request", true,
				"query", "from", "size", "sort", "search_after")
		}
	}
	match, from, size := predicate(func(*apiKey) bool { return true }), 0, 10
	if e == nil {
		e = cmpOr(o.decode("from", &from), o.decode("size", &size))
	}
	if e == nil && o.has("query") {
		match, e = compile(o.fields["query"])
	}
	switch {
	case e != nil:
	case from < 0 || size < 0:
		e = illegalArgument("[from] and [size] must not be negative")
	case from+size > maxResultWindow:
		e = illegalArgument("Result window is too large, from + size must be less than or "+
			"equal to: [%d] but was [%d]", maxResultWindow, from+size)
	}
	all := s.allowed(p, actionQuery.privileges)
	if e == nil && !all && !s.allowed(p, manageOwn) {
		e = forbidden(p, actionQuery)
	}
	if e != nil {
		e.write(w)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var hits []*apiKey
	for _, k := range s.keyOrder {
		if (all || k.owner == p.username && k.realm == p.home) && match(k) {
			hits = append(hits, k)
		}
	}
	page := []map[string]any{}
	for _, k := range hits[min(from, len(hits)):min(from+size, len(hits))] {
		page = append(page, k.info())
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"total": len(hits), "count": len(page), "api_keys": page,
	})
}

// norm renders a field or query value for comparison, so that a JSON
// number matches the epoch milliseconds of a date field.
func norm(v any) string {
	switch v := v.(type) {
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case int64:
		return strconv.FormatInt(v, 10)
	}
	return fmt.Sprint(v)
}

// cmpOr returns the first error that is not nil.
func cmpOr(errs ...*esError) *esError {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// compile compiles a query: an object with exactly one query type.
func compile(raw json.RawMessage) (predicate, *esError) {
	var q map[string]json.RawMessage
	if err := json.Unmarshal(raw, &q); err != nil || len(q) != 1 {
		return nil, parseError("query", "a query must be an object with one query type")
	}
	for typ, body := range q {
		switch typ {
		case "match_all":
			return func(*apiKey) bool { return true }, nil
		case "bool":
			return compileBool(body)
		case "term", "prefix":
			return compileTerm(typ, body)
		case "terms":
			return compileTerms(body)
		case "ids":
			var v struct{ Values []string }
			if err := json.Unmarshal(body, &v); err != nil {
				return nil, parseError("ids", "[values] must be an array of ids")
			}
			return func(k *apiKey) bool { return slices.Contains(v.Values, k.id) }, nil
		case "exists":
			var v struct{ Field string }
			if err := json.Unmarshal(body, &v); err != nil || v.Field == "" {
				return nil, parseError("exists", "[field] is required")
			}
			if e := checkField(v.Field); e != nil {
				return nil, e
			}
			return func(k *apiKey) bool { _, ok := k.field(v.Field); return ok }, nil
		default:
			return nil, illegalArgument("Query type [%s] is not currently supported in this "+
				"context", typ)
		}
	}
	panic("unreachable")
}

// compileBool compiles a bool query.
func compileBool(body json.RawMessage) (predicate, *esError) {
	var b map[string]json.RawMessage
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, parseError("bool", "expected an object")
	}
	clauses := map[string][]predicate{}
	minShould := -1
	for occur, raw := range b {
		if occur == "minimum_should_match" {
			if err := json.Unmarshal(raw, &minShould); err != nil {
				return nil, parseError("bool", "[minimum_should_match] must be an integer")
			}
			continue
		}
		if !slices.Contains([]string{"must", "filter", "should", "must_not"}, occur) {
			return nil, parseError("bool", "query does not support [%s]", occur)
		}
		// A clause is one query or an array of them.
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) != nil {
			list = []json.RawMessage{raw}
		}
		for _, q := range list {
			p, e := compile(q)
			if e != nil {
				return nil, e
			}
			clauses[occur] = append(clauses[occur], p)
		}
	}
	if minShould < 0 {
		minShould = 0
		if len(clauses["should"]) > 0 && len(clauses["must"])+len(clauses["filter"]) == 0 {
			minShould = 1
		}
	}
	return func(k *apiKey) bool {
		for _, p := range append(clauses["must"], clauses["filter"]...) {
			if !p(k) {
				return false
			}
		}
		for _, p := range clauses["must_not"] {
			if p(k) {
				return false
			}
		}
		n := 0
		for _, p := range clauses["should"] {
			if p(k) {
				n++
			}
		}
		return n >= minShould
	}, nil
}

// compileTerm compiles term and prefix queries: {field: value} or
// {field: {"value": value}}.
func compileTerm(typ string, body json.RawMessage) (predicate, *esError) {
	field, raw, e := singleField(typ, body)
	if e != nil {
		return nil, e
	}
	var v struct{ Value any }
	if json.Unmarshal(raw, &v) != nil || v.Value == nil {
		if err := json.Unmarshal(raw, &v.Value); err != nil {
			return nil, parseError(typ, "malformed value for [%s]", field)
		}
	}
	want := norm(v.Value)
	if typ == "prefix" {
		return func(k *apiKey) bool {
			got, ok := k.field(field)
			return ok && strings.HasPrefix(norm(got), want)
		}, nil
	}
	return func(k *apiKey) bool {
		got, ok := k.field(field)
		return ok && norm(got) == want
	}, nil
}

// compileTerms compiles a terms query: {field: [values]}.
func compileTerms(body json.RawMessage) (predicate, *esError) {
	field, raw, e := singleField("terms", body)
	if e != nil {
		return nil, e
	}
	var values []any
	if err := json.Unmarshal(raw, &values); err != nil {
		return nil, parseError("terms", "[%s] must be an array of values", field)
	}
	want := make([]string, len(values))
	for i, v := range values {
		want[i] = norm(v)
	}
	return func(k *apiKey) bool {
		got, ok := k.field(field)
		return ok && slices.Contains(want, norm(got))
	}, nil
}

// singleField returns the one field a term-level query names.
func singleField(typ string, body json.RawMessage) (string, json.RawMessage, *esError) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || len(m) != 1 {
		return "", nil, parseError(typ, "query must name exactly one field")
	}
	for f, raw := range m {
		return f, raw, checkField(f)
	}
	panic("unreachable")
}

// queryable are the fields queries may name, besides metadata.*.
var queryable = []string{"id", "type", "name", "creation", "expiration", "invalidated",
	"invalidation", "username", "realm"}

// checkField rejects fields that cannot be queried.
func checkField(f string) *esError {
	if slices.Contains(queryable, f) || strings.HasPrefix(f, "metadata.") {
		return nil
	}
	return illegalArgument("Field [%s] is not allowed for querying or aggregation", f)
}

// field returns the value of a queryable field of k.
func (k *apiKey) field(f string) (any, bool) {
	switch f {
	case "id":
		return k.id, true
	case "type":
		return "rest", true
	case "name":
		return k.name, true
	case "creation":
		return millis(k.creation), true
	case "expiration":
		return millis(k.expiration), !k.expiration.IsZero()
	case "invalidated":
		return k.invalidated, true
	case "invalidation":
		return millis(k.invalidation), k.invalidated
	case "username":
		return k.owner, true
	case "realm":
		return k.realm.Name, true
	}
	// Metadata is flattened: metadata.a.b names {"a": {"b": ...}}.
	var v any = k.metadata
	for _, part := range strings.Split(strings.TrimPrefix(f, "metadata."), ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[part]; !ok {
			return nil, false
		}
	}
	return v, true
}
