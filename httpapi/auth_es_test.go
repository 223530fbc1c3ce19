package httpapi_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/devserver/esdev"
	"github.com/deputyhq/deputy/elasticsearch"
	"github.com/deputyhq/deputy/internal/keyring"
)

// grantRecorder is a transport that keeps the secrets of the API keys
// Elasticsearch grants, so that the test can look for them in responses
// and logs.
type grantRecorder struct {
	mu      sync.Mutex
	secrets []string
}

func (g *grantRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/api_key/grant") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var key struct {
		APIKey  string `json:"api_key"`
		Encoded string `json:"encoded"`
	}
	if err := json.Unmarshal(body, &key); err == nil && key.APIKey != "" {
		g.mu.Lock()
		g.secrets = append(g.secrets, key.APIKey, key.Encoded)
		g.mu.Unlock()
	}
	return resp, nil
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// TestAuth_Elasticsearch runs the API against the Elasticsearch stand-in:
// callers authenticate there, and their tasks get keys granted there.
func TestAuth_Elasticsearch(t *testing.T) {
	t.Parallel()
	es := esdev.New(esdev.Config{})
	es.AddRole("deputy_service", "grant_api_key")
	es.AddUser("deputy", "deputy-service-password", "deputy_service")
	es.AddUser("alice", "alice-password")
	es.AddUser("bob", "bob-password")
	es.AddUser("root", "root-password", "superuser")
	esSrv := httptest.NewServer(es)
	t.Cleanup(esSrv.Close)

	rec := &grantRecorder{}
	svc, err := elasticsearch.New(elasticsearch.Config{
		URL: esSrv.URL, Username: "deputy", Password: "deputy-service-password", Transport: rec,
	})
	if err != nil {
		t.Fatalf("new elasticsearch service: %v", err)
	}
	secret := make([]byte, keyring.KeySize)
	_, _ = rand.Read(secret)
	kr, err := keyring.New(secret)
	if err != nil {
		t.Fatalf("new keyring: %v", err)
	}
	f := setup(t, options{
		auth: svc, adminRole: "superuser", keys: []deputy.KeyService{svc}, cipher: kr,
	})
	alice, bob, root := basic("alice", "alice-password"), basic("bob", "bob-password"),
		basic("root", "root-password")

	var out strings.Builder // every response body
	do := func(method, path, body, caller string, status int) *httptest.ResponseRecorder {
		t.Helper()
		w := f.do(method, path, body, as(caller)...)
		want(t, w, status)
		out.WriteString(w.Body.String())
		return w
	}
	keyID := func(w *httptest.ResponseRecorder) string {
		t.Helper()
		var task struct {
			UserScope map[string]any `json:"user_scope"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &task); err != nil {
			t.Fatalf("decode %s: %v", w.Body, err)
		}
		id, _ := task.UserScope["api_key_id"].(string)
		if id == "" || task.UserScope["user_name"] != "alice" ||
			task.UserScope["api_key_created_by_user"] != false {
			t.Fatalf("user_scope = %v, want alice's granted key", task.UserScope)
		}
		return id
	}
	pending := func() string {
		t.Helper()
		w := do("GET", "/api/api_keys/_pending", "", root, http.StatusOK)
		var ids []string
		for _, k := range decode[struct{ Keys []struct{ ID, Kind string } }](t, w).Keys {
			ids = append(ids, k.Kind+":"+k.ID)
		}
		return strings.Join(ids, ",")
	}

	// Alice's task runs with a key granted for her.
	w := do("POST", "/api/tasks", `{"id":"t1","task_type":"noop"}`, alice, http.StatusCreated)
	first := keyID(w)
	if keys := es.Keys(); len(keys) != 1 || keys[0].ID != first || keys[0].Owner != "alice" {
		t.Fatalf("stand-in keys = %+v, want one of alice's with id %s", keys, first)
	}
	if got := keyID(do("GET", "/api/tasks/t1", "", alice, http.StatusOK)); got != first {
		t.Fatalf("key id = %s, want %s", got, first)
	}
	do("GET", "/api/tasks/t1", "", bob, http.StatusNotFound)
	wantError(t, f.do("GET", "/api/tasks", "", as(basic("alice", "wrong"))...),
		http.StatusUnauthorized, deputy.EUNAUTHORIZED, "")

	// Regenerating replaces the key and queues the old one.
	w = do("POST", "/api/tasks/_bulk_update", `{"ids":["t1"],"regenerate_api_key":true}`, alice,
		http.StatusOK)
	res := decode[bulkResult](t, w)
	if len(res.Tasks) != 1 || len(res.Errors) != 0 || res.Tasks[0].UserScope.KeyIDs["es"] == first {
		t.Fatalf("regenerate = %s, want t1 with a new key", w.Body)
	}
	second := res.Tasks[0].UserScope.KeyIDs["es"]
	if got := pending(); got != "es:"+first {
		t.Fatalf("pending keys = %q, want es:%s", got, first)
	}

	// Removing the task queues its key.
	do("DELETE", "/api/tasks/t1", "", alice, http.StatusNoContent)
	if got := pending(); got != "es:"+first+",es:"+second {
		t.Fatalf("pending keys = %q, want es:%s,es:%s", got, first, second)
	}
	do("GET", "/api/api_keys/_pending", "", alice, http.StatusForbidden)

	// No credential or key secret reached a response or a log line.
	rec.mu.Lock()
	secrets := append([]string{"alice-password", "root-password", alice, root}, rec.secrets...)
	rec.mu.Unlock()
	if len(secrets) != 8 {
		t.Fatalf("recorded %d key secrets, want 4 (two grants)", len(secrets)-4)
	}
	all := out.String() + f.logs.String()
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Fatalf("secret %q appears in a response or a log line", s)
		}
	}
}
