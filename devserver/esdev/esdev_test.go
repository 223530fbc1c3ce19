package esdev_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/deputyhq/deputy/devserver/devtest"
	"github.com/deputyhq/deputy/devserver/esdev"
	"github.com/deputyhq/deputy/devserver/uiamdev"
)

const sharedSecret = devtest.SharedSecret

// fixture is an Elasticsearch stand-in backed by a UIAM stand-in, with
// users: elastic (superuser), deputy (grant_api_key, manage_api_key), bob
// (manage_own_api_key), alice (no privileges) and, at UIAM, carol.
type fixture struct {
	es      *esdev.Server
	uiam    *uiamdev.Server
	url     string
	uiamURL string
	clock   *devtest.Clock
	session string // carol's UIAM session token
}

func setup(t *testing.T) *fixture {
	t.Helper()
	st := devtest.Start(t, nil)
	st.UIAM.AddUser("carol", "editor")
	es := st.ES
	es.AddRole("deputy", "grant_api_key", "manage_api_key")
	es.AddRole("own_keys", "manage_own_api_key")
	es.AddUser("elastic", "elastic-password", "superuser")
	es.AddUser("deputy", "deputy-password", "deputy")
	es.AddUser("bob", "bob-password", "own_keys")
	es.AddUser("alice", "alice-password", "viewer")
	return &fixture{es: es, uiam: st.UIAM, url: st.ESURL, uiamURL: st.UIAMURL, clock: st.Clock,
		session: st.UIAM.SessionToken("carol")}
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

var (
	elastic = basic("elastic", "elastic-password")
	deputy  = basic("deputy", "deputy-password")
	bob     = basic("bob", "bob-password")
	alice   = basic("alice", "alice-password")
)

// request is one call to the stand-in.
type request struct {
	method, path, auth, body string
	header                   map[string]string
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	raw    string
	json   map[string]any
}

// do sends req and decodes the answer, which must be JSON.
func (f *fixture) do(t *testing.T, req request) response {
	t.Helper()
	r, err := http.NewRequest(req.method, f.url+req.path, strings.NewReader(req.body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if req.auth != "" {
		r.Header.Set("Authorization", req.auth)
	}
	if req.body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	resp := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if p := res.Header.Get("X-Elastic-Product"); p != "Elasticsearch" {
		t.Fatalf("%s %s: X-Elastic-Product %q; want Elasticsearch", req.method, req.path, p)
	}
	if err := json.Unmarshal(raw, &resp.json); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object: %v", req.method, req.path, raw, err)
	}
	return resp
}

// ok fails unless the answer is a 200.
func (r response) ok(t *testing.T) response {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d %s; want 200", r.status, r.raw)
	}
	return r
}

// str returns a string field of the answer.
func (r response) str(field string) string {
	s, _ := r.json[field].(string)
	return s
}

// list returns an array field of the answer as strings.
func (r response) list(field string) []string {
	var out []string
	for _, v := range r.json[field].([]any) {
		out = append(out, v.(string))
	}
	return out
}

// wantError checks an error answer's status, type and reason.
func wantError(t *testing.T, r response, status int, typ, reason string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d %s; want %d", r.status, r.raw, status)
	}
	var e struct {
		Error struct {
			RootCause []map[string]any `json:"root_cause"`
			Type      string           `json:"type"`
			Reason    string           `json:"reason"`
		} `json:"error"`
		Status int `json:"status"`
	}
	if err := json.Unmarshal([]byte(r.raw), &e); err != nil {
		t.Fatalf("error body %s: %v", r.raw, err)
	}
	if e.Status != status || e.Error.Type != typ || !strings.Contains(e.Error.Reason, reason) {
		t.Fatalf("error %s; want status %d, type %s, reason containing %q", r.raw, status, typ,
			reason)
	}
	if len(e.Error.RootCause) != 1 || e.Error.RootCause[0]["type"] != typ ||
		e.Error.RootCause[0]["reason"] != e.Error.Reason || len(e.Error.RootCause[0]) != 2 {
		t.Fatalf("root_cause %v; want one cause with the same type and reason", e.Error.RootCause)
	}
	_, hasHeader := r.json["error"].(map[string]any)["header"]
	if hasHeader != (status == http.StatusUnauthorized) {
		t.Fatalf("error %s: header present = %t; want it only on 401", r.raw, hasHeader)
	}
}

// wantRESTError checks an error of the REST layer: {"error": "...", "status": N}.
func wantRESTError(t *testing.T, r response, status int, msg string) {
	t.Helper()
	if r.status != status || r.json["error"] != msg || r.json["status"] != float64(status) {
		t.Fatalf("answer %d %s; want %d {\"error\":%q}", r.status, r.raw, status, msg)
	}
}

// grantBody is a grant of a key named name for a password user.
func grantBody(user, pass, name string) string {
	return `{"grant_type":"password","username":"` + user + `","password":"` + pass +
		`","api_key":{"name":"` + name + `","role_descriptors":{},` +
		`"metadata":{"managed":true,"application":"deputy"}}}`
}

// grant grants a key for a password user as deputy and returns the
// answer.
func (f *fixture) grant(t *testing.T, user, pass, name string) response {
	t.Helper()
	return f.do(t, request{method: "POST", path: "/_security/api_key/grant?refresh=false",
		auth: deputy, body: grantBody(user, pass, name)}).ok(t)
}

// authenticate calls _authenticate with auth.
func (f *fixture) authenticate(t *testing.T, auth string, header map[string]string) response {
	t.Helper()
	return f.do(t, request{method: "GET", path: "/_security/_authenticate", auth: auth,
		header: header})
}

// invalidate invalidates with body as elastic.
func (f *fixture) invalidate(t *testing.T, body string) response {
	t.Helper()
	return f.do(t, request{method: "DELETE", path: "/_security/api_key", auth: elastic,
		body: body})
}
