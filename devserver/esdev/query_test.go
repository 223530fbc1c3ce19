package esdev_test

import (
	"slices"
	"testing"
)

func TestServer_Query(t *testing.T) {
	t.Parallel()

	f := setup(t)
	a1 := f.grant(t, "alice", "alice-password", "report-1").str("id")
	a2 := f.grant(t, "alice", "alice-password", "other").str("id")
	b1 := f.grant(t, "bob", "bob-password", "report-2").str("id")
	own := f.do(t, request{method: "POST", path: "/_security/api_key", auth: bob,
		body: `{"name":"mine","metadata":{"application":"other","task":{"id":"t1"}}}`}).ok(t)
	b2 := own.str("id")
	f.invalidate(t, `{"ids":["`+a2+`"]}`).ok(t)

	query := func(auth, method, body string) response {
		t.Helper()
		return f.do(t, request{method: method, path: "/_security/_query/api_key", auth: auth,
			body: body})
	}
	ids := func(r response) []string {
		t.Helper()
		var out []string
		for _, k := range r.ok(t).json["api_keys"].([]any) {
			out = append(out, k.(map[string]any)["id"].(string))
		}
		return out
	}

	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"All", ``, []string{a1, a2, b1, b2}},
		{"MatchAll", `{"query":{"match_all":{}}}`, []string{a1, a2, b1, b2}},
		{"TermMetadata", `{"query":{"term":{"metadata.application":"deputy"}}}`,
			[]string{a1, a2, b1}},
		{"TermNested", `{"query":{"term":{"metadata.task.id":{"value":"t1"}}}}`, []string{b2}},
		{"TermInvalidated", `{"query":{"term":{"invalidated":true}}}`, []string{a2}},
		{"Terms", `{"query":{"terms":{"id":["` + a1 + `","` + b2 + `"]}}}`, []string{a1, b2}},
		{"IDs", `{"query":{"ids":{"values":["` + b1 + `"]}}}`, []string{b1}},
		{"Prefix", `{"query":{"prefix":{"name":"report-"}}}`, []string{a1, b1}},
		{"Exists", `{"query":{"exists":{"field":"metadata.task"}}}`, []string{b2}},
		{"Bool", `{"query":{"bool":{"must":[{"term":{"username":"alice"}}],` +
			`"must_not":{"term":{"invalidated":true}}}}}`, []string{a1}},
		{"Should", `{"query":{"bool":{"should":[{"term":{"name":"other"}},` +
			`{"term":{"name":"mine"}}]}}}`, []string{a2, b2}},
		{"Filter", `{"query":{"bool":{"filter":[{"term":{"realm":"default_native"}},` +
			`{"prefix":{"name":"rep"}}]}}}`, []string{a1, b1}},
		{"Page", `{"from":1,"size":2}`, []string{a2, b1}},
	} {
		got := ids(query(elastic, "POST", tc.body))
		if !slices.Equal(got, tc.want) {
			t.Fatalf("%s: ids %v; want %v", tc.name, got, tc.want)
		}
	}

	r := query(elastic, "GET", `{"size":1}`).ok(t)
	if r.json["total"] != float64(4) || r.json["count"] != float64(1) {
		t.Fatalf("answer %s; want total 4, count 1", r.raw)
	}
	// Without read_security, bob sees his own keys only.
	if got := ids(query(bob, "POST", ``)); !slices.Equal(got, []string{b1, b2}) {
		t.Fatalf("bob's query: ids %v; want [%s %s]", got, b1, b2)
	}
	wantError(t, query(alice, "POST", ``), 403, "security_exception",
		"api_key/query] is unauthorized for user [alice]")

	for _, tc := range []struct {
		body, typ, reason string
	}{
		{`{"query":{"term":{"api_key_hash":"x"}}}`, "illegal_argument_exception",
			"Field [api_key_hash] is not allowed for querying or aggregation"},
		{`{"query":{"fuzzy":{"name":"x"}}}`, "illegal_argument_exception",
			"Query type [fuzzy] is not currently supported in this context"},
		{`{"from":9999,"size":2}`, "illegal_argument_exception", "Result window is too large"},
		{`{"querry":{}}`, "x_content_parse_exception",
			"[query_api_key_request] unknown field [querry]"},
	} {
		wantError(t, query(elastic, "POST", tc.body), 400, tc.typ, tc.reason)
	}
}
