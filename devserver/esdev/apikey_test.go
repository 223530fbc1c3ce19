package esdev_test

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestServer_Token(t *testing.T) {
	t.Parallel()

	const path = "/_security/oauth2/token"

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "POST", path: path, auth: elastic,
			body: `{"grant_type":"password","username":"alice","password":"alice-password"}`}).ok(t)
		if r.str("access_token") == "" || r.str("type") != "Bearer" ||
			r.json["expires_in"] != float64(1200) {
			t.Fatalf("answer %s; want a Bearer token for 1200s", r.raw)
		}
	})
	for _, tc := range []struct {
		name, auth, body string
		status           int
		typ, reason      string
	}{
		{"ErrPrivilege", alice, `{"grant_type":"password","username":"alice","password":"x"}`,
			403, "security_exception",
			"action [cluster:admin/xpack/security/token/create] is unauthorized for user [alice]"},
		{"ErrPassword", elastic, `{"grant_type":"password","username":"alice","password":"x"}`,
			401, "security_exception", "failed to authenticate user [alice]"},
		{"ErrGrantType", elastic, `{"grant_type":"magic"}`,
			400, "action_request_validation_exception",
			"Validation Failed: 1: grant_type [magic] is not supported;"},
		{"ErrMissing", elastic, `{"grant_type":"password"}`,
			400, "action_request_validation_exception",
			"Validation Failed: 1: username is missing;2: password is missing;"},
		{"ErrUnknownField", elastic, `{"grant_type":"password","user":"alice"}`,
			400, "x_content_parse_exception", "[token_request] unknown field [user]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			r := f.do(t, request{method: "POST", path: path, auth: tc.auth, body: tc.body})
			wantError(t, r, tc.status, tc.typ, tc.reason)
		})
	}
}

func TestServer_Grant(t *testing.T) {
	t.Parallel()

	const path = "/_security/api_key/grant"

	t.Run("OKPassword", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.grant(t, "alice", "alice-password", "TaskManager: report - alice")
		id, key := r.str("id"), r.str("api_key")
		if len(id) != 20 || strings.ContainsAny(id, "+/=") || r.str("name") !=
			"TaskManager: report - alice" || key == "" || r.json["expiration"] != nil {
			t.Fatalf("answer %s; want a 20-character URL-safe id, the name and a key", r.raw)
		}
		want := base64.StdEncoding.EncodeToString([]byte(id + ":" + key))
		if r.str("encoded") != want {
			t.Fatalf("encoded %q; want base64(id:api_key) %q", r.str("encoded"), want)
		}
		keys := f.es.Keys()
		if len(keys) != 1 || keys[0].ID != id || keys[0].Owner != "alice" ||
			keys[0].Realm != "default_native" || keys[0].Metadata["application"] != "deputy" {
			t.Fatalf("Keys() = %+v", keys)
		}
	})
	t.Run("OKAccessToken", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		tok := f.token(t, "alice", "alice-password")
		r := f.do(t, request{method: "POST", path: path, auth: deputy,
			body: `{"grant_type":"access_token","access_token":"` + tok +
				`","api_key":{"name":"k"}}`}).ok(t)
		if keys := f.es.Keys(); keys[0].ID != r.str("id") || keys[0].Owner != "alice" {
			t.Fatalf("Keys() = %+v; want alice's key", keys)
		}
	})
	t.Run("OKUIAMAccessToken", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "POST", path: path, auth: deputy,
			body: `{"grant_type":"access_token","access_token":"` + f.session + `",` +
				`"client_authentication":{"scheme":"SharedSecret","value":"` + sharedSecret +
				`"},"api_key":{"name":"k"}}`}).ok(t)
		keys := f.es.Keys()
		if keys[0].ID != r.str("id") || keys[0].Owner != "carol" || keys[0].Realm != "uiam" {
			t.Fatalf("Keys() = %+v; want carol's key in the uiam realm", keys)
		}
		a := f.authenticate(t, "ApiKey "+r.str("encoded"), nil).ok(t)
		if a.str("username") != "carol" {
			t.Fatalf("key authenticates as %s; want carol", a.str("username"))
		}
	})
	t.Run("ErrUIAMWithoutClientAuthentication", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "POST", path: path, auth: deputy,
			body: `{"grant_type":"access_token","access_token":"` + f.session +
				`","api_key":{"name":"k"}}`})
		wantError(t, r, 401, "security_exception", "client authentication is required")
	})
	t.Run("ErrPrivilege", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "POST", path: path, auth: bob,
			body: grantBody("alice", "alice-password", "k")})
		wantError(t, r, 403, "security_exception",
			"action [cluster:admin/xpack/security/api_key/grant] is unauthorized for user [bob] "+
				"with effective roles [own_keys], this action is granted by the cluster "+
				"privileges [grant_api_key,manage_api_key,manage_security,all]")
	})
	t.Run("ErrUserPassword", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "POST", path: path, auth: deputy,
			body: grantBody("alice", "wrong", "k")})
		wantError(t, r, 401, "security_exception", "unable to authenticate user [alice]")
	})
	t.Run("ErrAccessToken", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "POST", path: path, auth: deputy,
			body: `{"grant_type":"access_token","access_token":"bm9wZQ==","api_key":{"name":"k"}}`})
		wantError(t, r, 401, "security_exception", "unable to authenticate")
	})

	const key = `"api_key":{"name":"k"}`
	for _, tc := range []struct {
		name, body  string
		typ, reason string
	}{
		{"ErrNoGrantType", `{` + key + `}`, "action_request_validation_exception",
			"Validation Failed: 1: [grant_type] is required;"},
		{"ErrGrantType", `{"grant_type":"magic",` + key + `}`,
			"action_request_validation_exception", "grant_type [magic] is not supported"},
		{"ErrNoPassword", `{"grant_type":"password","username":"alice",` + key + `}`,
			"action_request_validation_exception",
			"[password] is required for grant_type [password]"},
		{"ErrTokenWithPassword", `{"grant_type":"password","username":"a","password":"p",` +
			`"access_token":"t",` + key + `}`, "action_request_validation_exception",
			"[access_token] is not supported for grant_type [password]"},
		{"ErrNoAccessToken", `{"grant_type":"access_token",` + key + `}`,
			"action_request_validation_exception",
			"[access_token] is required for grant_type [access_token]"},
		{"ErrUsernameWithToken", `{"grant_type":"access_token","access_token":"t",` +
			`"username":"a",` + key + `}`, "action_request_validation_exception",
			"[username] is not supported for grant_type [access_token]"},
		{"ErrClientAuthenticationWithPassword", `{"grant_type":"password","username":"a",` +
			`"password":"p","client_authentication":{"scheme":"SharedSecret","value":"v"},` +
			key + `}`, "action_request_validation_exception",
			"[client_authentication] is not supported for grant_type [password]"},
		{"ErrClientAuthenticationScheme", `{"grant_type":"access_token","access_token":"t",` +
			`"client_authentication":{"scheme":"Basic","value":"v"},` + key + `}`,
			"action_request_validation_exception",
			"[client_authentication.scheme] must be [SharedSecret]"},
		{"ErrNoKey", `{"grant_type":"password","username":"a","password":"p"}`,
			"action_request_validation_exception", "api key name is required"},
		{"ErrNoName", `{"grant_type":"password","username":"a","password":"p","api_key":{}}`,
			"action_request_validation_exception", "api key name is required"},
		{"ErrNameUnderscore", grantBody("a", "p", "_k"), "action_request_validation_exception",
			"api key name may not begin with an underscore"},
		{"ErrNameWhitespace", grantBody("a", "p", " k"), "action_request_validation_exception",
			"api key name may not begin or end with whitespace"},
		{"ErrNameLength", grantBody("a", "p", strings.Repeat("n", 257)),
			"action_request_validation_exception",
			"api key name may not be more than 256 characters long"},
		{"ErrReservedMetadata", `{"grant_type":"password","username":"a","password":"p",` +
			`"api_key":{"name":"k","metadata":{"_x":1}}}`, "action_request_validation_exception",
			"API key metadata keys may not start with [_]"},
		{"ErrExpiration", `{"grant_type":"password","username":"a","password":"p",` +
			`"api_key":{"name":"k","expiration":"soon"}}`, "parse_exception",
			"failed to parse setting [expiration] with value [soon] as a time value"},
		{"ErrUnknownField", `{"grant_type":"password","user":"a",` + key + `}`,
			"x_content_parse_exception", "[grant_api_key_request] unknown field [user]"},
		{"ErrUnknownKeyField", `{"grant_type":"password","username":"a","password":"p",` +
			`"api_key":{"name":"k","owner":"x"}}`, "x_content_parse_exception",
			"[api_key_request] unknown field [owner]"},
		{"ErrNotJSON", `not json`, "x_content_parse_exception", "[grant_api_key_request]"},
		{"ErrEmptyBody", ``, "parse_exception", "request body is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			r := f.do(t, request{method: "POST", path: path, auth: deputy, body: tc.body})
			wantError(t, r, 400, tc.typ, tc.reason)
			if n := len(f.es.Keys()); n != 0 {
				t.Fatalf("%d keys made; want none", n)
			}
		})
	}

	t.Run("ErrParam", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "POST", path: path + "?refresh=false&foo=1", auth: deputy,
			body: grantBody("alice", "alice-password", "k")})
		wantError(t, r, 400, "illegal_argument_exception",
			"request [/_security/api_key/grant] contains unrecognized parameter: [foo]")
	})
	t.Run("ErrMethod", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "PUT", path: path, auth: deputy,
			body: grantBody("alice", "alice-password", "k")})
		wantRESTError(t, r, 405, "Incorrect HTTP method for uri [/_security/api_key/grant] "+
			"and method [PUT], allowed: [POST]")
	})
	t.Run("ErrUnauthenticated", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "POST", path: path,
			body: grantBody("alice", "alice-password", "k")})
		wantError(t, r, 401, "security_exception",
			"missing authentication credentials for REST request [/_security/api_key/grant]")
	})
}

func TestServer_Create(t *testing.T) {
	t.Parallel()

	f := setup(t)
	for _, method := range []string{"POST", "PUT"} {
		r := f.do(t, request{method: method, path: "/_security/api_key", auth: bob,
			body: `{"name":"bob's key","metadata":{"team":"a"}}`}).ok(t)
		if r.str("name") != "bob's key" || r.str("encoded") == "" {
			t.Fatalf("%s: answer %s", method, r.raw)
		}
	}
	keys := f.es.Keys()
	if len(keys) != 2 || keys[0].Owner != "bob" || keys[1].Owner != "bob" {
		t.Fatalf("Keys() = %+v; want two keys of bob's", keys)
	}
	wantError(t, f.do(t, request{method: "POST", path: "/_security/api_key", auth: bob,
		body: `{}`}), 400, "action_request_validation_exception", "api key name is required")
}

func TestServer_Invalidate(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		k1 := f.grant(t, "alice", "alice-password", "k1").str("id")
		k2 := f.grant(t, "alice", "alice-password", "k2").str("id")
		r := f.do(t, request{method: "DELETE", path: "/_security/api_key", auth: deputy,
			body: `{"ids":["` + k1 + `","` + k2 + `"]}`}).ok(t)
		want := `{"error_count":0,"invalidated_api_keys":["` + k1 + `","` + k2 + `"],` +
			`"previously_invalidated_api_keys":[]}` + "\n"
		if r.raw != want {
			t.Fatalf("answer %s; want %s", r.raw, want)
		}
		for _, k := range f.es.Keys() {
			if !k.Invalidated {
				t.Fatalf("key %s not invalidated", k.ID)
			}
		}

		// Invalidating again, or unknown ids, answers with empty lists.
		want = `{"error_count":0,"invalidated_api_keys":[],"previously_invalidated_api_keys":[]}` +
			"\n"
		for _, body := range []string{`{"ids":["` + k1 + `"]}`, `{"id":"` + k2 + `"}`,
			`{"ids":["nosuchkey"]}`} {
			if r := f.invalidate(t, body).ok(t); r.raw != want {
				t.Fatalf("invalidate %s: answer %s; want %s", body, r.raw, want)
			}
		}
	})
	t.Run("OKSelectors", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		a1 := f.grant(t, "alice", "alice-password", "report-1").str("id")
		a2 := f.grant(t, "alice", "alice-password", "other").str("id")
		b1 := f.grant(t, "bob", "bob-password", "report-2").str("id")
		got := f.invalidate(t, `{"name":"report-*"}`).ok(t)
		if ids := got.list("invalidated_api_keys"); !slices.Equal(ids, []string{a1, b1}) {
			t.Fatalf("by name: invalidated %v; want [%s %s]", ids, a1, b1)
		}
		got = f.invalidate(t, `{"username":"alice","realm_name":"default_native"}`).ok(t)
		if ids := got.list("invalidated_api_keys"); !slices.Equal(ids, []string{a2}) {
			t.Fatalf("by username: invalidated %v; want [%s]", ids, a2)
		}
	})
	t.Run("OKOwner", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		a := f.grant(t, "alice", "alice-password", "a").str("id")
		b := f.grant(t, "bob", "bob-password", "b").str("id")
		r := f.do(t, request{method: "DELETE", path: "/_security/api_key", auth: bob,
			body: `{"owner":true}`}).ok(t)
		if ids := r.list("invalidated_api_keys"); !slices.Equal(ids, []string{b}) {
			t.Fatalf("owner: invalidated %v; want only bob's %s", ids, b)
		}
		// bob may not invalidate alice's key by id.
		r = f.do(t, request{method: "DELETE", path: "/_security/api_key", auth: bob,
			body: `{"ids":["` + a + `"]}`})
		wantError(t, r, 403, "security_exception",
			"action [cluster:admin/xpack/security/api_key/invalidate] is unauthorized for "+
				"user [bob]")
	})
	t.Run("OKItself", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		g := f.grant(t, "bob", "bob-password", "b")
		r := f.do(t, request{method: "DELETE", path: "/_security/api_key",
			auth: "ApiKey " + g.str("encoded"), body: `{"ids":["` + g.str("id") + `"]}`}).ok(t)
		if ids := r.list("invalidated_api_keys"); !slices.Equal(ids, []string{g.str("id")}) {
			t.Fatalf("invalidated %v; want the key itself", ids)
		}
	})
	t.Run("OKPartialFailure", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		ok := f.grant(t, "alice", "alice-password", "ok").str("id")
		bad := f.grant(t, "alice", "alice-password", "bad").str("id")
		f.es.FailInvalidate(bad, "failed to invalidate api key ["+bad+"]")
		r := f.invalidate(t, `{"ids":["`+ok+`","`+bad+`"]}`).ok(t)
		details, _ := r.json["error_details"].([]any)
		if !slices.Equal(r.list("invalidated_api_keys"), []string{ok}) ||
			r.json["error_count"] != float64(1) || len(details) != 1 {
			t.Fatalf("answer %s; want %s invalidated and one error", r.raw, ok)
		}
	})

	for _, tc := range []struct {
		name, body  string
		typ, reason string
	}{
		{"ErrNoSelector", `{}`, "action_request_validation_exception",
			"One of [api key id, api key name, username, realm name] must be specified"},
		{"ErrOwnerFalse", `{"owner":false}`, "action_request_validation_exception",
			"One of [api key id, api key name, username, realm name] must be specified"},
		{"ErrIDAndIDs", `{"id":"a","ids":["b"]}`, "illegal_argument_exception",
			"Must use either [id] or [ids], not both at the same time"},
		{"ErrIDsAndUsername", `{"ids":["a"],"username":"alice"}`,
			"action_request_validation_exception",
			"username or realm name must not be specified when the api key id(s) or api key " +
				"name are specified"},
		{"ErrIDsAndName", `{"ids":["a"],"name":"n"}`, "action_request_validation_exception",
			"only one of [api key id(s), api key name] can be specified"},
		{"ErrOwnerAndUsername", `{"owner":true,"username":"alice"}`,
			"action_request_validation_exception",
			"neither username nor realm-name may be specified when invalidating owned API keys"},
		{"ErrEmptyIDs", `{"ids":[]}`, "action_request_validation_exception",
			"Field [ids] cannot be an empty array"},
		{"ErrBlankID", `{"ids":["a",""]}`, "action_request_validation_exception",
			"Field [ids] must not contain blank id, but got blank id at index position: [1]"},
		{"ErrUnknownField", `{"keys":["a"]}`, "x_content_parse_exception",
			"[invalidate_api_key_request] unknown field [keys]"},
		{"ErrEmptyBody", ``, "parse_exception", "request body is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			wantError(t, f.invalidate(t, tc.body), 400, tc.typ, tc.reason)
		})
	}
	t.Run("ErrPrivilege", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		r := f.do(t, request{method: "DELETE", path: "/_security/api_key", auth: alice,
			body: `{"ids":["a"]}`})
		wantError(t, r, 403, "security_exception", "this action is granted by the cluster "+
			"privileges [manage_api_key,manage_security,all]")
	})
}

func TestServer_GetKeys(t *testing.T) {
	t.Parallel()

	f := setup(t)
	a1 := f.grant(t, "alice", "alice-password", "report-1").str("id")
	a2 := f.grant(t, "alice", "alice-password", "other").str("id")
	b1 := f.grant(t, "bob", "bob-password", "report-2").str("id")
	f.invalidate(t, `{"ids":["`+a2+`"]}`).ok(t)

	ids := func(auth, query string) []string {
		t.Helper()
		r := f.do(t, request{method: "GET", path: "/_security/api_key" + query, auth: auth}).ok(t)
		var out []string
		for _, k := range r.json["api_keys"].([]any) {
			out = append(out, k.(map[string]any)["id"].(string))
		}
		return out
	}
	for _, tc := range []struct {
		auth, query string
		want        []string
	}{
		{elastic, "", []string{a1, a2, b1}},
		{elastic, "?id=" + a1, []string{a1}},
		{elastic, "?name=report-*", []string{a1, b1}},
		{elastic, "?username=alice", []string{a1, a2}},
		{elastic, "?username=alice&active_only=true", []string{a1}},
		{elastic, "?id=nosuchkey", nil},
		{bob, "?owner=true", []string{b1}},
	} {
		if got := ids(tc.auth, tc.query); !slices.Equal(got, tc.want) {
			t.Fatalf("GET %s: ids %v; want %v", tc.query, got, tc.want)
		}
	}

	r := f.do(t, request{method: "GET", path: "/_security/api_key?id=" + a2, auth: elastic}).ok(t)
	k := r.json["api_keys"].([]any)[0].(map[string]any)
	for field, want := range map[string]any{"id": a2, "name": "other", "type": "rest",
		"invalidated": true, "username": "alice", "realm": "default_native",
		"realm_type": "native", "creation": float64(f.clock.Now().UnixMilli()),
		"invalidation": float64(f.clock.Now().UnixMilli())} {
		if k[field] != want {
			t.Fatalf("key field %s = %v; want %v (key %v)", field, k[field], want, k)
		}
	}
	if md, _ := k["metadata"].(map[string]any); md["managed"] != true {
		t.Fatalf("metadata %v; want managed", k["metadata"])
	}
	if _, ok := k["expiration"]; ok {
		t.Fatalf("key %v has an expiration; want none", k)
	}

	wantError(t, f.do(t, request{method: "GET", path: "/_security/api_key", auth: bob}),
		403, "security_exception", "api_key/get] is unauthorized for user [bob]")
	wantError(t, f.do(t, request{method: "GET", path: "/_security/api_key?id=a&name=b",
		auth: elastic}), 400, "action_request_validation_exception",
		"only one of [api key id, api key name] can be specified")
	wantError(t, f.do(t, request{method: "GET", path: "/_security/api_key?ids=a",
		auth: elastic}), 400, "illegal_argument_exception",
		"request [/_security/api_key] contains unrecognized parameter: [ids]")
	r = f.do(t, request{method: "PATCH", path: "/_security/api_key", auth: elastic})
	wantRESTError(t, r, http.StatusMethodNotAllowed, "Incorrect HTTP method for uri "+
		"[/_security/api_key] and method [PATCH], allowed: [GET, POST, PUT, DELETE]")
}
