package elasticsearch_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/elasticsearch"
)

func TestService_Grant(t *testing.T) {
	t.Parallel()

	t.Run("OKPassword", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		k := f.mustGrant(t, basic("alice", "alice-password"))
		keys := f.es.Keys()
		if len(keys) != 1 || k.ID != keys[0].ID || k.CreatedByUser {
			t.Fatalf("Grant = %+v; stand-in has %+v", k, keys)
		}
		got := keys[0]
		if got.Owner != "alice" || got.Name != "deputy: report" ||
			got.Metadata["managed"] != true || got.Metadata["application"] != "deputy" {
			t.Fatalf("granted key %+v; want alice's managed deputy key", got)
		}
		id, _, _ := strings.Cut(mustDecode(t, k.Secret.Reveal()), ":")
		if id != k.ID {
			t.Fatalf("secret encodes id %q; want %q", id, k.ID)
		}

		// The key authenticates as alice.
		c, err := f.service(t, elasticsearch.Config{CacheTTL: -1}).Authenticate(
			context.Background(), deputy.Secret(f.svc.Header(k.Secret, k.CreatedByUser).Get("Authorization")))
		if err != nil || c.UserName != "alice" || c.APIKeyID != k.ID {
			t.Fatalf("Authenticate with the key = %+v, %v; want alice's key %s", c, err, k.ID)
		}
	})
	t.Run("OKAccessToken", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		tok := f.token(t, "alice", "alice-password")
		k := f.mustGrant(t, "Bearer "+tok)
		if keys := f.es.Keys(); keys[0].ID != k.ID || keys[0].Owner != "alice" {
			t.Fatalf("Keys() = %+v; want alice's key %s", keys, k.ID)
		}
	})
	t.Run("OKUIAMSession", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		k := f.mustGrant(t, "Bearer "+f.session)
		if keys := f.es.Keys(); keys[0].ID != k.ID || keys[0].Owner != "carol" ||
			keys[0].Realm != "uiam" {
			t.Fatalf("Keys() = %+v; want carol's key %s", keys, k.ID)
		}
	})
	t.Run("OKOwnKey", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		own := f.mustGrant(t, basic("alice", "alice-password"))
		for _, auth := range []string{"ApiKey " + own.Secret.Reveal(),
			"apikey " + own.Secret.Reveal(),
			"ApiKey " + strings.TrimRight(own.Secret.Reveal(), "=")} {
			k := f.mustGrant(t, auth)
			if k.ID != own.ID || !k.CreatedByUser ||
				auth != "ApiKey "+k.Secret.Reveal() && auth != "apikey "+k.Secret.Reveal() {
				t.Fatalf("Grant(%q) = %+v; want the caller's key, created by the user", auth, k)
			}
		}
		if n := len(f.es.Keys()); n != 1 {
			t.Fatalf("stand-in has %d keys; want only the caller's", n)
		}
	})
	t.Run("OKNameTruncated", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		// 255 ASCII characters and an emoji: 257 UTF-16 code units.
		name := strings.Repeat("n", 255) + "😀"
		_, err := f.svc.Grant(context.Background(), caller(basic("alice", "alice-password")),
			name)
		if err != nil {
			t.Fatalf("Grant: %v", err)
		}
		if got := f.es.Keys()[0].Name; got != strings.Repeat("n", 255) {
			t.Fatalf("name %q (%d bytes); want the 255 ASCII characters", got, len(got))
		}
	})

	for _, tc := range []struct {
		name, auth, keyName, code, msg string
	}{
		{"ErrOrganizationKey", "ApiKey essu_orgkey", "n", deputy.EINVALID, "organization-level"},
		{"ErrMalformedBasic", "Basic !!!", "n", deputy.EINVALID, "malformed basic"},
		{"ErrBasicWithoutPassword", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice")),
			"n", deputy.EINVALID, "malformed basic"},
		{"ErrMalformedAPIKey", "ApiKey bm9jb2xvbg==", "n", deputy.EINVALID, "malformed api key"},
		{"ErrScheme", "Digest abc", "n", deputy.EINVALID, "unsupported authorization scheme"},
		{"ErrNoScheme", "c2VjcmV0", "n", deputy.EINVALID, "malformed authorization"},
		{"ErrEmpty", "", "n", deputy.EINVALID, "malformed authorization"},
		{"ErrNoName", basic("alice", "alice-password"), " ", deputy.EINVALID, "name is required"},
		{"ErrPassword", basic("alice", "wrong"), "n", deputy.EUNAUTHORIZED, "rejected"},
		{"ErrToken", "Bearer bm9wZQ==", "n", deputy.EUNAUTHORIZED, "rejected"},
		{"ErrUIAMSession", "Bearer essu_unknown", "n", deputy.EUNAUTHORIZED, "rejected"},
		{"ErrRejectedName", basic("alice", "alice-password"), "_reserved", deputy.EINVALID,
			"rejected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			k, err := f.svc.Grant(context.Background(), caller(tc.auth), tc.keyName)
			wantCode(t, err, tc.code)
			if k != nil || !strings.Contains(deputy.ErrorMessage(err), tc.msg) {
				t.Fatalf("Grant = %+v, %v; want message containing %q", k, err, tc.msg)
			}
			if n := len(f.es.Keys()); n != 0 {
				t.Fatalf("%d keys granted; want none", n)
			}
		})
	}

	t.Run("ErrNilCaller", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		_, err := f.svc.Grant(context.Background(), nil, "n")
		wantCode(t, err, deputy.EINVALID)
	})
	t.Run("ErrUIAMWithoutSharedSecret", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		svc := f.service(t, elasticsearch.Config{UIAMSharedSecret: noSharedSecret})
		_, err := svc.Grant(context.Background(), caller("Bearer "+f.session), "n")
		wantCode(t, err, deputy.EUNAUTHORIZED)
	})
	t.Run("ErrServicePrivilege", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		svc := f.service(t, elasticsearch.Config{Username: "alice", Password: "alice-password"})
		_, err := svc.Grant(context.Background(), caller(basic("bob", "bob-password")), "n")
		wantCode(t, err, deputy.EFORBIDDEN)
		if !strings.Contains(deputy.ErrorMessage(err), "grant_api_key") ||
			!strings.Contains(err.Error(), "security_exception") {
			t.Fatalf("err = %v; want it to name grant_api_key and keep the reason", err)
		}
	})
	t.Run("ErrServiceCredentials", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		svc := f.service(t, elasticsearch.Config{Username: "deputy", Password: "wrong"})
		_, err := svc.Grant(context.Background(), caller(basic("alice", "alice-password")), "n")
		wantCode(t, err, deputy.EUNAUTHORIZED)
	})
	t.Run("ErrUnavailable", func(t *testing.T) {
		t.Parallel()
		svc, err := elasticsearch.New(elasticsearch.Config{URL: closedURL(), Username: "deputy",
			Password: "deputy-password"})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		_, err = svc.Grant(context.Background(), caller(basic("alice", "alice-password")), "n")
		wantCode(t, err, deputy.EUNAVAILABLE)
	})
	t.Run("OKServiceAPIKey", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		// deputy's own key, granted with its own password.
		own := f.mustGrant(t, basic("deputy", "deputy-password"))
		svc := f.service(t, elasticsearch.Config{APIKey: own.Secret})
		k, err := svc.Grant(context.Background(), caller(basic("alice", "alice-password")), "n")
		if err != nil || k == nil {
			t.Fatalf("Grant with deputy's api key = %+v, %v", k, err)
		}
	})
}

// TestService_Grant_Wire pins the grant request: path, method, query,
// deputy's own credentials and the body.
func TestService_Grant_Wire(t *testing.T) {
	t.Parallel()

	var got struct {
		method, path, query, auth string
		body                      map[string]any
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path, got.query = r.Method, r.URL.Path, r.URL.RawQuery
		got.auth, got.body = r.Header.Get("Authorization"), nil
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &got.body)
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		// No "encoded": the service computes it.
		_, _ = io.WriteString(w, `{"id":"abc","name":"n","api_key":"sekret"}`)
	}))
	t.Cleanup(ts.Close)

	svc, err := elasticsearch.New(elasticsearch.Config{URL: ts.URL, Username: "deputy",
		Password: "deputy-password", UIAMSharedSecret: sharedSecret})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, tc := range []struct {
		name, auth string
		want       string
	}{
		{"Password", basic("alice", "pw"), `{"grant_type":"password","username":"alice",` +
			`"password":"pw","api_key":{"name":"deputy: report","role_descriptors":{},` +
			`"metadata":{"managed":true,"application":"deputy"}}}`},
		{"AccessToken", "Bearer tok", `{"grant_type":"access_token","access_token":"tok",` +
			`"api_key":{"name":"deputy: report","role_descriptors":{},` +
			`"metadata":{"managed":true,"application":"deputy"}}}`},
		{"UIAMAccessToken", "Bearer essu_tok", `{"grant_type":"access_token",` +
			`"access_token":"essu_tok","client_authentication":{"scheme":"SharedSecret",` +
			`"value":"` + sharedSecret + `"},"api_key":{"name":"deputy: report",` +
			`"role_descriptors":{},"metadata":{"managed":true,"application":"deputy"}}}`},
	} {
		k, err := svc.Grant(context.Background(), caller(tc.auth), "deputy: report")
		if err != nil {
			t.Fatalf("%s: Grant: %v", tc.name, err)
		}
		encoded := base64.StdEncoding.EncodeToString([]byte("abc:sekret"))
		if k.ID != "abc" || k.Secret.Reveal() != encoded {
			t.Fatalf("%s: Grant = %+v; want id abc and base64(abc:sekret)", tc.name, k)
		}
		if got.method != "POST" || got.path != "/_security/api_key/grant" ||
			got.query != "refresh=false" || got.auth != basic("deputy", "deputy-password") {
			t.Fatalf("%s: request %s %s?%s as %q", tc.name, got.method, got.path, got.query,
				got.auth)
		}
		if b, _ := json.Marshal(got.body); string(b) != canonical(t, tc.want) {
			t.Fatalf("%s: body %s; want %s", tc.name, b, canonical(t, tc.want))
		}
	}
}

// canonical re-encodes a JSON document with sorted keys.
func canonical(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("unmarshal %s: %v", s, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// mustDecode decodes standard base64.
func mustDecode(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return string(b)
}

// token returns an Elasticsearch access token for a password user.
func (f *fixture) token(t *testing.T, user, pass string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", f.url+"/_security/oauth2/token", strings.NewReader(
		`{"grant_type":"password","username":"`+user+`","password":"`+pass+`"}`))
	req.Header.Set("Authorization", basic("bob", "bob-password"))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	defer res.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.AccessToken == "" {
		t.Fatalf("token: status %d, %v", res.StatusCode, err)
	}
	return body.AccessToken
}
