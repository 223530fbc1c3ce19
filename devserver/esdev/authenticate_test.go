package esdev_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deputyhq/deputy/devserver/esdev"
)

// TestServer_Unauthenticated pins the exact 401 answer.
func TestServer_Unauthenticated(t *testing.T) {
	t.Parallel()

	f := setup(t)
	r := f.authenticate(t, basic("alice", "wrong"), nil)
	const reason = "unable to authenticate user [alice] for REST request [/_security/_authenticate]"
	want := `{"error":{"root_cause":[{"type":"security_exception","reason":"` + reason + `"}],` +
		`"type":"security_exception","reason":"` + reason + `",` +
		`"header":{"WWW-Authenticate":["Basic realm=\"security\" charset=\"UTF-8\"",` +
		`"Bearer realm=\"security\"","ApiKey"]}},"status":401}` + "\n"
	if r.status != http.StatusUnauthorized || r.raw != want {
		t.Fatalf("answer %d %s\nwant 401 %s", r.status, r.raw, want)
	}
	wantHeader := []string{`Basic realm="security" charset="UTF-8"`, `Bearer realm="security"`,
		"ApiKey"}
	if got := r.header.Values("WWW-Authenticate"); !slices.Equal(got, wantHeader) {
		t.Fatalf("WWW-Authenticate %q; want %q", got, wantHeader)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q; want application/json", ct)
	}
}

func TestServer_Authenticate(t *testing.T) {
	t.Parallel()

	t.Run("OKBasic", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.authenticate(t, deputy, nil).ok(t)
		if r.str("username") != "deputy" || r.str("authentication_type") != "realm" ||
			!slices.Equal(r.list("roles"), []string{"deputy"}) || r.json["api_key"] != nil {
			t.Fatalf("answer %s; want deputy by realm", r.raw)
		}
		realm := r.json["authentication_realm"].(map[string]any)
		if realm["name"] != "default_native" || realm["type"] != "native" {
			t.Fatalf("authentication_realm %v; want default_native", realm)
		}
		for _, field := range []string{"full_name", "email", "metadata", "enabled",
			"lookup_realm"} {
			if _, ok := r.json[field]; !ok {
				t.Fatalf("answer %s lacks %s", r.raw, field)
			}
		}
		if n := f.es.AuthenticateCount(); n != 1 {
			t.Fatalf("AuthenticateCount = %d; want 1", n)
		}
	})
	t.Run("OKToken", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		tok := f.token(t, "alice", "alice-password")
		r := f.authenticate(t, "Bearer "+tok, nil).ok(t)
		if r.str("username") != "alice" || r.str("authentication_type") != "token" {
			t.Fatalf("answer %s; want alice by token", r.raw)
		}
		f.clock.Add(esdev.DefaultTokenTTL)
		wantError(t, f.authenticate(t, "Bearer "+tok, nil), 401, "security_exception",
			"unable to authenticate with provided credentials")
	})
	t.Run("OKAPIKey", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		g := f.grant(t, "alice", "alice-password", "task key")
		r := f.authenticate(t, "ApiKey "+g.str("encoded"), nil).ok(t)
		key, _ := r.json["api_key"].(map[string]any)
		if r.str("username") != "alice" || r.str("authentication_type") != "api_key" ||
			key["id"] != g.str("id") || key["name"] != "task key" || len(r.list("roles")) != 0 {
			t.Fatalf("answer %s; want alice by api key %s", r.raw, g.str("id"))
		}
	})
	t.Run("OKUIAMSession", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.authenticate(t, "Bearer "+f.session,
			map[string]string{"x-client-authentication": sharedSecret}).ok(t)
		if r.str("username") != "carol" || r.str("authentication_type") != "token" ||
			!slices.Equal(r.list("roles"), []string{"editor"}) {
			t.Fatalf("answer %s; want carol by token", r.raw)
		}
	})
	t.Run("OKUIAMKeys", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		internal := f.uiamGrant(t)
		extID, external := f.uiam.CreateKey("carol", "console key")
		r := f.authenticate(t, "ApiKey "+internal,
			map[string]string{"x-client-authentication": sharedSecret}).ok(t)
		if r.str("username") != "carol" || r.str("authentication_type") != "api_key" {
			t.Fatalf("answer %s; want carol by api key", r.raw)
		}
		// A user-created key needs no client authentication.
		r = f.authenticate(t, "ApiKey "+external, nil).ok(t)
		if key, _ := r.json["api_key"].(map[string]any); key["id"] != extID {
			t.Fatalf("answer %s; want key %s", r.raw, extID)
		}
	})

	for _, tc := range []struct {
		name   string
		auth   func(t *testing.T, f *fixture) string
		header map[string]string
		reason string
	}{
		{"ErrMissing", func(*testing.T, *fixture) string { return "" }, nil,
			"missing authentication credentials for REST request [/_security/_authenticate]"},
		{"ErrUnknownUser", func(*testing.T, *fixture) string { return basic("mallory", "x") }, nil,
			"unable to authenticate user [mallory]"},
		{"ErrScheme", func(*testing.T, *fixture) string { return "Digest abc" }, nil,
			"unable to authenticate with provided credentials"},
		{"ErrToken", func(*testing.T, *fixture) string { return "Bearer bm90IGEgdG9rZW4=" }, nil,
			"unable to authenticate with provided credentials"},
		{"ErrMalformedKey", func(*testing.T, *fixture) string { return "ApiKey !!!" }, nil,
			"unable to authenticate with provided credentials"},
		{"ErrUnknownKey", func(*testing.T, *fixture) string {
			return "ApiKey " + base64.StdEncoding.EncodeToString([]byte("nosuchid:secret"))
		}, nil, "unable to authenticate with provided credentials"},
		{"ErrUIAMSessionWithoutClient", session, nil, "client authentication is required"},
		{"ErrUIAMSessionWrongClient", session,
			map[string]string{"x-client-authentication": "wrong"},
			"client authentication is required"},
		{"ErrUIAMInternalKeyWithoutClient", func(t *testing.T, f *fixture) string {
			return "ApiKey " + f.uiamGrant(t)
		}, nil, "client authentication is required"},
		{"ErrUIAMUnknown", func(*testing.T, *fixture) string { return "Bearer essu_unknown" },
			map[string]string{"x-client-authentication": sharedSecret},
			"unable to authenticate with provided credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			wantError(t, f.authenticate(t, tc.auth(t, f), tc.header), 401, "security_exception",
				tc.reason)
		})
	}

	t.Run("ErrWrongKeySecret", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		g := f.grant(t, "alice", "alice-password", "k")
		bad := base64.StdEncoding.EncodeToString([]byte(g.str("id") + ":wrong"))
		wantError(t, f.authenticate(t, "ApiKey "+bad, nil), 401, "security_exception",
			"unable to authenticate with provided credentials")
	})
	t.Run("ErrInvalidatedKey", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		g := f.grant(t, "alice", "alice-password", "k")
		f.invalidate(t, `{"ids":["`+g.str("id")+`"]}`).ok(t)
		wantError(t, f.authenticate(t, "ApiKey "+g.str("encoded"), nil), 401,
			"security_exception", "unable to authenticate with provided credentials")
	})
	t.Run("ErrExpiredKey", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "POST", path: "/_security/api_key", auth: alice,
			body: `{"name":"short","expiration":"1h"}`})
		// alice lacks manage_own_api_key: grant one instead.
		wantError(t, r, 403, "security_exception", "is unauthorized for user [alice]")
		r = f.do(t, request{method: "POST", path: "/_security/api_key", auth: bob,
			body: `{"name":"short","expiration":"1h"}`}).ok(t)
		if want := f.clock.Now().Add(time.Hour).UnixMilli(); r.json["expiration"] != float64(want) {
			t.Fatalf("expiration %v; want %d", r.json["expiration"], want)
		}
		f.authenticate(t, "ApiKey "+r.str("encoded"), nil).ok(t)
		f.clock.Add(time.Hour)
		wantError(t, f.authenticate(t, "ApiKey "+r.str("encoded"), nil), 401,
			"security_exception", "unable to authenticate with provided credentials")
	})
	t.Run("ErrMethod", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "POST", path: "/_security/_authenticate", auth: elastic})
		wantRESTError(t, r, 405, "Incorrect HTTP method for uri [/_security/_authenticate] "+
			"and method [POST], allowed: [GET]")
	})
	t.Run("ErrNoHandler", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "GET", path: "/_security/nothing", auth: elastic})
		wantRESTError(t, r, 400, "no handler found for uri [/_security/nothing] and method [GET]")
	})
	t.Run("ErrParam", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "GET", path: "/_security/_authenticate?bogus=1",
			auth: elastic})
		wantError(t, r, 400, "illegal_argument_exception",
			"request [/_security/_authenticate] contains unrecognized parameter: [bogus]")
	})
}

// session returns carol's UIAM session as a bearer credential.
func session(_ *testing.T, f *fixture) string { return "Bearer " + f.session }

// token returns an access token for a password user, created by elastic.
func (f *fixture) token(t *testing.T, user, pass string) string {
	t.Helper()
	r := f.do(t, request{method: "POST", path: "/_security/oauth2/token", auth: elastic,
		body: `{"grant_type":"password","username":"` + user + `","password":"` + pass + `"}`})
	return r.ok(t).str("access_token")
}

// uiamGrant grants an internal UIAM key with carol's session and returns
// its secret.
func (f *fixture) uiamGrant(t *testing.T) string {
	t.Helper()
	req, _ := http.NewRequest("POST", f.uiamURL+"/uiam/api/v1/api-keys/_grant",
		strings.NewReader(`{"description":"task","internal":true}`))
	req.Header.Set("Authorization", "Bearer "+f.session)
	req.Header.Set("x-client-authentication", sharedSecret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("uiam grant: %v", err)
	}
	defer res.Body.Close()
	var body struct{ Key string }
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.Key == "" {
		t.Fatalf("uiam grant: status %d, %v", res.StatusCode, err)
	}
	return body.Key
}
