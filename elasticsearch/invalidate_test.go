package elasticsearch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/elasticsearch"
)

// invalidateKeys returns what invalidates keys.
func invalidateKeys(keys ...*deputy.GrantedKey) []deputy.InvalidateKey {
	out := make([]deputy.InvalidateKey, len(keys))
	for i, k := range keys {
		out[i] = deputy.InvalidateKey{ID: k.ID, Secret: k.Secret}
	}
	return out
}

// wantDone fails unless every error is nil.
func wantDone(t *testing.T, errs []error, n int) {
	t.Helper()
	if len(errs) != n {
		t.Fatalf("%d errors; want %d", len(errs), n)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
	}
}

func TestService_Invalidate(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		k1 := f.mustGrant(t, basic("alice", "alice-password"))
		k2 := f.mustGrant(t, "Bearer "+f.session)
		wantDone(t, f.svc.Invalidate(context.Background(), invalidateKeys(k1, k2)), 2)
		for _, k := range f.es.Keys() {
			if !k.Invalidated {
				t.Fatalf("key %s not invalidated", k.ID)
			}
		}

		// Elasticsearch answers empty lists for keys already invalidated
		// and for unknown ids: both are done.
		keys := append(invalidateKeys(k1), deputy.InvalidateKey{ID: "purgedkey"})
		wantDone(t, f.svc.Invalidate(context.Background(), keys), 2)
	})
	t.Run("OKBatches", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		var keys []deputy.InvalidateKey
		for i := range 250 {
			keys = append(keys, deputy.InvalidateKey{ID: fmt.Sprintf("unknown-%03d", i)})
		}
		keys[120] = invalidateKeys(f.mustGrant(t, basic("alice", "alice-password")))[0]
		wantDone(t, f.svc.Invalidate(context.Background(), keys), 250)
		if n := f.requests.count("DELETE"); n != 3 {
			t.Fatalf("%d invalidate requests; want 3 batches of up to 100", n)
		}
		if !f.es.Keys()[0].Invalidated {
			t.Fatalf("the granted key was not invalidated")
		}
		if errs := f.svc.Invalidate(context.Background(), nil); len(errs) != 0 {
			t.Fatalf("Invalidate(nil) = %v; want no errors", errs)
		}
	})
	t.Run("ErrPartial", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		ok := f.mustGrant(t, basic("alice", "alice-password"))
		bad := f.mustGrant(t, basic("alice", "alice-password"))
		f.es.FailInvalidate(bad.ID, "failed to invalidate api key ["+bad.ID+"]")
		keys := append(invalidateKeys(ok, bad), deputy.InvalidateKey{ID: "unknownkey"},
			deputy.InvalidateKey{})
		errs := f.svc.Invalidate(context.Background(), keys)
		if errs[0] != nil {
			t.Fatalf("invalidated key: %v", errs[0])
		}
		if errs[1] == nil || !strings.Contains(errs[1].Error(), "failed to invalidate api key ["+
			bad.ID+"]") {
			t.Fatalf("failed key: %v; want the detail that names it", errs[1])
		}
		// With errors reported, an id in neither list is not known to be
		// invalid.
		if errs[2] == nil || !strings.Contains(errs[2].Error(), "reported 1 errors") {
			t.Fatalf("unconfirmed key: %v; want an error", errs[2])
		}
		wantCode(t, errs[3], deputy.EINVALID)
	})
	t.Run("ErrPrivilege", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		k := f.mustGrant(t, basic("alice", "alice-password"))
		svc := f.service(t, elasticsearch.Config{Username: "granter", Password: "granter-password"})
		errs := svc.Invalidate(context.Background(), invalidateKeys(k, k))
		for i, err := range errs {
			if err == nil || !strings.Contains(err.Error(), "status 403 security_exception") {
				t.Fatalf("key %d: %v; want a 403 error", i, err)
			}
		}
		if f.es.Keys()[0].Invalidated {
			t.Fatalf("key invalidated without the privilege")
		}
	})
	t.Run("ErrUnavailable", func(t *testing.T) {
		t.Parallel()
		svc, err := elasticsearch.New(elasticsearch.Config{URL: closedURL(), Username: "deputy",
			Password: "deputy-password"})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		for _, err := range svc.Invalidate(context.Background(),
			[]deputy.InvalidateKey{{ID: "a"}, {ID: "b"}}) {
			wantCode(t, err, deputy.EUNAVAILABLE)
		}
	})
	t.Run("ErrServerError", func(t *testing.T) {
		t.Parallel()
		// Elasticsearch fails the whole request when clearing its caches
		// fails, even though the keys were invalidated.
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Elastic-Product", "Elasticsearch")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"error":{"type":"exception","reason":"clearing the API `+
				`key cache failed; please clear the caches manually"},"status":500}`)
		}))
		t.Cleanup(ts.Close)
		svc, _ := elasticsearch.New(elasticsearch.Config{URL: ts.URL, Username: "deputy",
			Password: "deputy-password"})
		errs := svc.Invalidate(context.Background(), []deputy.InvalidateKey{{ID: "a"}})
		wantCode(t, errs[0], deputy.EUNAVAILABLE)
		if !strings.Contains(errs[0].Error(), "clearing the API key cache failed") {
			t.Fatalf("err = %v; want Elasticsearch's reason", errs[0])
		}
	})
}

// TestService_Invalidate_Wire pins the invalidate request.
func TestService_Invalidate_Wire(t *testing.T) {
	t.Parallel()

	var method, path, body string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		method, path, body = r.Method, r.URL.Path, string(b)
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		_, _ = io.WriteString(w, `{"invalidated_api_keys":["a"],`+
			`"previously_invalidated_api_keys":["b"],"error_count":0}`)
	}))
	t.Cleanup(ts.Close)
	svc, _ := elasticsearch.New(elasticsearch.Config{URL: ts.URL, Username: "deputy",
		Password: "deputy-password"})
	errs := svc.Invalidate(context.Background(), []deputy.InvalidateKey{{ID: "a"}, {ID: "b"}})
	wantDone(t, errs, 2)
	var got map[string]any
	_ = json.Unmarshal([]byte(body), &got)
	if method != "DELETE" || path != "/_security/api_key" || len(got) != 1 ||
		fmt.Sprint(got["ids"]) != "[a b]" {
		t.Fatalf("request %s %s %s; want DELETE /_security/api_key {\"ids\":[\"a\",\"b\"]}",
			method, path, body)
	}
}
