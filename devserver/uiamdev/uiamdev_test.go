package uiamdev_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deputyhq/deputy/devserver/devtest"
	"github.com/deputyhq/deputy/devserver/uiamdev"
)

const sharedSecret = "uiam-shared-secret-for-tests"

// fixture is a stand-in with a user, "alice", and a session of hers.
type fixture struct {
	srv     *uiamdev.Server
	url     string
	clock   *devtest.Clock
	session string
}

func setup(t *testing.T) *fixture {
	t.Helper()
	clk := devtest.NewClock()
	srv := uiamdev.New(uiamdev.Config{SharedSecret: sharedSecret, Now: clk.Now})
	srv.AddUser("alice", "viewer")
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &fixture{srv: srv, url: ts.URL, clock: clk, session: srv.SessionToken("alice")}
}

// request is one call to the stand-in. Secret is the shared secret; "-"
// leaves the header out.
type request struct {
	method, path, auth, secret, body string
}

// response is a decoded answer.
type response struct {
	status int
	raw    string
	json   map[string]any
}

// do sends req and decodes the answer.
func (f *fixture) do(t *testing.T, req request) response {
	t.Helper()
	r, err := http.NewRequest(req.method, f.url+req.path, strings.NewReader(req.body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if req.auth != "" {
		r.Header.Set("Authorization", req.auth)
	}
	switch req.secret {
	case "":
		r.Header.Set("x-client-authentication", sharedSecret)
	case "-":
	default:
		r.Header.Set("x-client-authentication", req.secret)
	}
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	resp := response{status: res.StatusCode, raw: string(raw)}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q; want application/json", req.method, req.path, ct)
	}
	if err := json.Unmarshal(raw, &resp.json); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object: %v", req.method, req.path, raw, err)
	}
	return resp
}

// kibanaGrant is the grant body Kibana sends.
const kibanaGrant = `{"description":"TaskManager-UIAM: report - alice","internal":true,` +
	`"role_assignments":{"limit":{"access":["application"],"resource":["project"]}}}`

// grant grants a key with auth and returns its id and secret.
func (f *fixture) grant(t *testing.T, auth string) (id, key string) {
	t.Helper()
	resp := f.do(t, request{method: "POST", path: "/uiam/api/v1/api-keys/_grant", auth: auth,
		body: kibanaGrant})
	if resp.status != http.StatusOK {
		t.Fatalf("grant: status %d %s", resp.status, resp.raw)
	}
	id, _ = resp.json["id"].(string)
	key, _ = resp.json["key"].(string)
	return id, key
}

// wantError checks an error answer's status, shape and code.
func wantError(t *testing.T, resp response, status int, code string) {
	t.Helper()
	if resp.status != status {
		t.Fatalf("status %d %s; want %d", resp.status, resp.raw, status)
	}
	e, ok := resp.json["error"].(map[string]any)
	if !ok || len(resp.json) != 1 || len(e) != 2 {
		t.Fatalf("body %s; want {\"error\":{\"code\":...,\"message\":...}}", resp.raw)
	}
	if e["code"] != code {
		t.Fatalf("error code %v; want %s", e["code"], code)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Fatalf("error without a message: %s", resp.raw)
	}
}

func TestServer_Grant(t *testing.T) {
	t.Parallel()

	const path = "/uiam/api/v1/api-keys/_grant"

	t.Run("OKSession", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		resp := f.do(t, request{method: "POST", path: path, auth: "Bearer " + f.session,
			body: kibanaGrant})
		if resp.status != http.StatusOK {
			t.Fatalf("status %d %s; want 200", resp.status, resp.raw)
		}
		keys := make([]string, 0, len(resp.json))
		for k := range resp.json {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if got := strings.Join(keys, ","); got != "description,id,key" {
			t.Fatalf("response fields %s; want description,id,key", got)
		}
		if key, _ := resp.json["key"].(string); !strings.HasPrefix(key, "essu_") {
			t.Fatalf("key %q lacks the essu_ prefix", key)
		}
		got := f.srv.Keys()
		if len(got) != 1 || got[0].ID != resp.json["id"] || got[0].Owner != "alice" ||
			!got[0].Internal || got[0].Revoked ||
			got[0].Description != "TaskManager-UIAM: report - alice" {
			t.Fatalf("Keys() = %+v", got)
		}
	})
	t.Run("OKAPIKey", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		_, key := f.srv.CreateKey("alice", "console key")
		id, _ := f.grant(t, "ApiKey "+key)
		if got := f.srv.Keys(); len(got) != 2 || got[1].ID != id || got[1].Owner != "alice" {
			t.Fatalf("Keys() = %+v", got)
		}
	})
	t.Run("OKExpiration", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		resp := f.do(t, request{method: "POST", path: path, auth: "Bearer " + f.session,
			body: `{"description":"d","internal":true,"expiration":"1h"}`})
		if resp.status != http.StatusOK {
			t.Fatalf("status %d %s; want 200", resp.status, resp.raw)
		}
		key := resp.json["key"].(string)
		f.clock.Add(time.Hour)
		auth := f.do(t, request{method: "GET", path: "/uiam/api/v1/authentication/_authenticate",
			auth: "ApiKey " + key})
		wantError(t, auth, http.StatusUnauthorized, uiamdev.CodeInvalidCredentials)
	})

	for _, tc := range []struct {
		name   string
		req    func(f *fixture) request
		status int
		code   string
	}{
		{"ErrClientAuthMissing", func(f *fixture) request {
			return request{method: "POST", path: path, auth: "Bearer " + f.session, secret: "-",
				body: kibanaGrant}
		}, 401, uiamdev.CodeClientAuthMissing},
		{"ErrClientAuthInvalid", func(f *fixture) request {
			return request{method: "POST", path: path, auth: "Bearer " + f.session,
				secret: "wrong", body: kibanaGrant}
		}, 403, uiamdev.CodeClientAuthInvalid},
		{"ErrNoCredential", func(f *fixture) request {
			return request{method: "POST", path: path, body: kibanaGrant}
		}, 401, uiamdev.CodeInvalidCredentials},
		{"ErrBasicCredential", func(f *fixture) request {
			return request{method: "POST", path: path, auth: "Basic YWxpY2U6cGFzcw==",
				body: kibanaGrant}
		}, 401, uiamdev.CodeInvalidCredentials},
		{"ErrUnknownSession", func(f *fixture) request {
			return request{method: "POST", path: path, auth: "Bearer essu_nope",
				body: kibanaGrant}
		}, 401, uiamdev.CodeInvalidCredentials},
		{"ErrSessionAsAPIKey", func(f *fixture) request {
			return request{method: "POST", path: path, auth: "ApiKey " + f.session,
				body: kibanaGrant}
		}, 401, uiamdev.CodeInvalidCredentials},
		{"ErrNoDescription", func(f *fixture) request {
			return request{method: "POST", path: path, auth: "Bearer " + f.session,
				body: `{"internal":true}`}
		}, 400, uiamdev.CodeBadRequest},
		{"ErrUnknownField", func(f *fixture) request {
			return request{method: "POST", path: path, auth: "Bearer " + f.session,
				body: `{"description":"d","name":"n"}`}
		}, 400, uiamdev.CodeBadRequest},
		{"ErrMalformedBody", func(f *fixture) request {
			return request{method: "POST", path: path, auth: "Bearer " + f.session, body: `{`}
		}, 400, uiamdev.CodeBadRequest},
		{"ErrRoleAssignments", func(f *fixture) request {
			return request{method: "POST", path: path, auth: "Bearer " + f.session,
				body: `{"description":"d","role_assignments":{"limit":{"access":[]}}}`}
		}, 400, uiamdev.CodeBadRequest},
		{"ErrExpiration", func(f *fixture) request {
			return request{method: "POST", path: path, auth: "Bearer " + f.session,
				body: `{"description":"d","expiration":"soon"}`}
		}, 400, uiamdev.CodeBadRequest},
		{"ErrMethod", func(f *fixture) request {
			return request{method: "GET", path: path, auth: "Bearer " + f.session}
		}, 405, uiamdev.CodeMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			wantError(t, f.do(t, tc.req(f)), tc.status, tc.code)
			if n := len(f.srv.Keys()); n != 0 {
				t.Fatalf("%d keys granted; want none", n)
			}
		})
	}

	t.Run("ErrSessionExpired", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		f.clock.Add(uiamdev.DefaultSessionTTL)
		resp := f.do(t, request{method: "POST", path: path, auth: "Bearer " + f.session,
			body: kibanaGrant})
		wantError(t, resp, 401, uiamdev.CodeInvalidCredentials)
	})
	t.Run("ErrRevokedKey", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		id, key := f.grant(t, "Bearer "+f.session)
		f.do(t, request{method: "DELETE", path: "/uiam/api/v1/api-keys/" + id,
			auth: "ApiKey " + key})
		resp := f.do(t, request{method: "POST", path: path, auth: "ApiKey " + key,
			body: kibanaGrant})
		wantError(t, resp, 401, uiamdev.CodeAPIKeyRevoked)
	})
}

func TestServer_Revoke(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		id, key := f.grant(t, "Bearer "+f.session)
		f.clock.Add(time.Minute)
		resp := f.do(t, request{method: "DELETE", path: "/uiam/api/v1/api-keys/" + id,
			auth: "ApiKey " + key})
		if resp.status != http.StatusOK {
			t.Fatalf("status %d %s; want 200", resp.status, resp.raw)
		}
		got := f.srv.Keys()[0]
		if !got.Revoked || !got.RevokedAt.Equal(f.clock.Now()) {
			t.Fatalf("key %+v; want revoked now", got)
		}

		// Revoking again answers APIKEY_REVOKED.
		resp = f.do(t, request{method: "DELETE", path: "/uiam/api/v1/api-keys/" + id,
			auth: "ApiKey " + key})
		wantError(t, resp, 401, uiamdev.CodeAPIKeyRevoked)
	})
	t.Run("ErrOtherKey", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		id1, _ := f.grant(t, "Bearer "+f.session)
		_, key2 := f.grant(t, "Bearer "+f.session)
		resp := f.do(t, request{method: "DELETE", path: "/uiam/api/v1/api-keys/" + id1,
			auth: "ApiKey " + key2})
		wantError(t, resp, 403, uiamdev.CodeForbidden)
		if f.srv.Keys()[0].Revoked {
			t.Fatalf("another key revoked key 1")
		}
	})
	t.Run("ErrMissing", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		resp := f.do(t, request{method: "DELETE", path: "/uiam/api/v1/api-keys/nosuchkey",
			auth: "ApiKey essu_unknown"})
		wantError(t, resp, 404, uiamdev.CodeAPIKeyMissing)
	})
	t.Run("ErrWrongSecret", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		id, _ := f.grant(t, "Bearer "+f.session)
		resp := f.do(t, request{method: "DELETE", path: "/uiam/api/v1/api-keys/" + id,
			auth: "ApiKey essu_unknown"})
		wantError(t, resp, 401, uiamdev.CodeInvalidCredentials)
	})
	t.Run("ErrSession", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		id, _ := f.grant(t, "Bearer "+f.session)
		resp := f.do(t, request{method: "DELETE", path: "/uiam/api/v1/api-keys/" + id,
			auth: "Bearer " + f.session})
		wantError(t, resp, 401, uiamdev.CodeInvalidCredentials)
	})
	t.Run("ErrClientAuth", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		id, key := f.grant(t, "Bearer "+f.session)
		resp := f.do(t, request{method: "DELETE", path: "/uiam/api/v1/api-keys/" + id,
			auth: "ApiKey " + key, secret: "-"})
		wantError(t, resp, 401, uiamdev.CodeClientAuthMissing)
		resp = f.do(t, request{method: "DELETE", path: "/uiam/api/v1/api-keys/" + id,
			auth: "ApiKey " + key, secret: "wrong"})
		wantError(t, resp, 403, uiamdev.CodeClientAuthInvalid)
		if f.srv.Keys()[0].Revoked {
			t.Fatalf("key revoked without the shared secret")
		}
	})
}

func TestServer_Authenticate(t *testing.T) {
	t.Parallel()

	const path = "/uiam/api/v1/authentication/_authenticate"

	t.Run("OKSession", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		resp := f.do(t, request{method: "GET", path: path, auth: "Bearer " + f.session})
		if resp.status != 200 || resp.json["username"] != "alice" ||
			resp.json["type"] != "session" || resp.json["api_key"] != nil {
			t.Fatalf("status %d %s; want alice's session", resp.status, resp.raw)
		}
		if roles, _ := resp.json["roles"].([]any); len(roles) != 1 || roles[0] != "viewer" {
			t.Fatalf("roles %v; want [viewer]", resp.json["roles"])
		}
	})
	t.Run("OKKeys", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		internalID, internal := f.grant(t, "Bearer "+f.session)
		externalID, external := f.srv.CreateKey("alice", "console key")
		for _, tc := range []struct {
			key, id  string
			internal bool
		}{{internal, internalID, true}, {external, externalID, false}} {
			resp := f.do(t, request{method: "GET", path: path, auth: "ApiKey " + tc.key})
			k, _ := resp.json["api_key"].(map[string]any)
			if resp.status != 200 || resp.json["type"] != "api_key" || k["id"] != tc.id ||
				k["internal"] != tc.internal {
				t.Fatalf("status %d %s; want key %s internal=%t", resp.status, resp.raw, tc.id,
					tc.internal)
			}
		}
	})
	t.Run("ErrRevoked", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		id, key := f.grant(t, "Bearer "+f.session)
		f.do(t, request{method: "DELETE", path: "/uiam/api/v1/api-keys/" + id,
			auth: "ApiKey " + key})
		resp := f.do(t, request{method: "GET", path: path, auth: "ApiKey " + key})
		wantError(t, resp, 401, uiamdev.CodeAPIKeyRevoked)
	})
	t.Run("ErrClientAuth", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		resp := f.do(t, request{method: "GET", path: path, auth: "Bearer " + f.session,
			secret: "-"})
		wantError(t, resp, 401, uiamdev.CodeClientAuthMissing)
	})
}

func TestServer_List(t *testing.T) {
	t.Parallel()

	f := setup(t)
	id, key := f.grant(t, "Bearer "+f.session)
	f.do(t, request{method: "DELETE", path: "/uiam/api/v1/api-keys/" + id, auth: "ApiKey " + key})
	f.srv.CreateKey("alice", "console key")

	resp := f.do(t, request{method: "GET", path: "/uiam/api/v1/api-keys"})
	keys, _ := resp.json["api_keys"].([]any)
	if resp.status != 200 || len(keys) != 2 {
		t.Fatalf("status %d %s; want two keys", resp.status, resp.raw)
	}
	first := keys[0].(map[string]any)
	if first["id"] != id || first["owner"] != "alice" || first["revoked"] != true ||
		first["internal"] != true || first["revoked_at"] == nil || first["created"] == nil {
		t.Fatalf("first key %v", first)
	}
	second := keys[1].(map[string]any)
	if second["revoked"] != false || second["revoked_at"] != nil || second["internal"] != false {
		t.Fatalf("second key %v", second)
	}
	if strings.Contains(resp.raw, key) {
		t.Fatalf("listing reveals a key's secret")
	}

	wantError(t, f.do(t, request{method: "GET", path: "/uiam/api/v1/api-keys", secret: "-"}),
		401, uiamdev.CodeClientAuthMissing)
	wantError(t, f.do(t, request{method: "GET", path: "/uiam/api/v1/nothing"}),
		404, uiamdev.CodeNotFound)
}
