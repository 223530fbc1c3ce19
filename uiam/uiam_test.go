package uiam_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/devserver/uiamdev"
	"github.com/deputyhq/deputy/uiam"
)

const sharedSecret = "uiam-shared-secret-for-tests"

// fixture is a UIAM stand-in with a user, "alice", and a service for it.
type fixture struct {
	uiam    *uiamdev.Server
	url     string
	svc     *uiam.Service
	session string
}

func setup(t *testing.T) *fixture {
	t.Helper()
	srv := uiamdev.New(uiamdev.Config{SharedSecret: sharedSecret})
	srv.AddUser("alice", "viewer")
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &fixture{uiam: srv, url: ts.URL, svc: mustNew(t, ts.URL, sharedSecret),
		session: srv.SessionToken("alice")}
}

func mustNew(t *testing.T, url, secret string) *uiam.Service {
	t.Helper()
	svc, err := uiam.New(uiam.Config{URL: url, SharedSecret: deputy.Secret(secret)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return svc
}

// caller returns a caller presenting authorization.
func caller(authorization string) *deputy.Caller {
	return &deputy.Caller{Authorization: deputy.Secret(authorization), UserName: "alice"}
}

func TestNew(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name string
		cfg  uiam.Config
	}{
		{"ErrNoURL", uiam.Config{SharedSecret: "s"}},
		{"ErrRelativeURL", uiam.Config{URL: "uiam.example", SharedSecret: "s"}},
		{"ErrCredentialsInURL", uiam.Config{URL: "https://u:p@uiam.example", SharedSecret: "s"}},
		{"ErrNoSecret", uiam.Config{URL: "https://uiam.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := uiam.New(tc.cfg); err == nil {
				t.Fatalf("New(%+v) succeeded", tc.cfg)
			}
		})
	}
}

func TestService_Grant(t *testing.T) {
	t.Parallel()

	t.Run("OKSession", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		k, err := f.svc.Grant(context.Background(), caller("Bearer "+f.session), "deputy: report")
		if err != nil {
			t.Fatalf("Grant: %v", err)
		}
		keys := f.uiam.Keys()
		if len(keys) != 1 || k.ID != keys[0].ID || k.CreatedByUser ||
			!strings.HasPrefix(k.Secret.Reveal(), "essu_") {
			t.Fatalf("Grant = %+v; stand-in has %+v", k, keys)
		}
		if got := keys[0]; got.Owner != "alice" || !got.Internal ||
			got.Description != "deputy: report" {
			t.Fatalf("granted key %+v; want alice's internal key described by the name", got)
		}
	})
	t.Run("OKOwnKey", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		id, secret := f.uiam.CreateKey("alice", "console key")
		c := caller("ApiKey " + secret)
		c.APIKeyID = id
		k, err := f.svc.Grant(context.Background(), c, "deputy: report")
		if err != nil {
			t.Fatalf("Grant: %v", err)
		}
		if k.ID != id || k.Secret.Reveal() != secret || !k.CreatedByUser {
			t.Fatalf("Grant = %+v; want the caller's key %s, created by the user", k, id)
		}
		if n := len(f.uiam.Keys()); n != 1 {
			t.Fatalf("stand-in has %d keys; want only the caller's", n)
		}

		// Without the id from the authenticator, the key is named by a
		// fingerprint that does not reveal it.
		k, err = f.svc.Grant(context.Background(), caller("ApiKey "+secret), "deputy: report")
		if err != nil || !strings.HasPrefix(k.ID, "sha256:") || strings.Contains(secret, k.ID[7:]) {
			t.Fatalf("Grant = %+v, %v; want a fingerprint id", k, err)
		}
	})
	t.Run("OKNotUIAM", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		for _, auth := range []string{"Basic YWxpY2U6cGFzc3dvcmQ=", "Bearer dGhpcyBpcyBhIHRva2Vu",
			"ApiKey aWQ6a2V5", "", "essu_x", "Digest essu_x"} {
			k, err := f.svc.Grant(context.Background(), caller(auth), "deputy: report")
			if k != nil || err != nil {
				t.Fatalf("Grant(%q) = %+v, %v; want nil, nil", auth, k, err)
			}
		}
		if k, err := f.svc.Grant(context.Background(), nil, "n"); k != nil || err != nil {
			t.Fatalf("Grant(nil caller) = %+v, %v; want nil, nil", k, err)
		}
		if n := len(f.uiam.Keys()); n != 0 {
			t.Fatalf("stand-in has %d keys; want none", n)
		}
	})
	t.Run("ErrUnauthorized", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		_, err := f.svc.Grant(context.Background(), caller("Bearer essu_expired"), "n")
		if code := deputy.ErrorCode(err); code != deputy.EUNAUTHORIZED {
			t.Fatalf("Grant: err = %v (code %s); want EUNAUTHORIZED", err, code)
		}
	})
	t.Run("ErrSharedSecret", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		svc := mustNew(t, f.url, "not-the-shared-secret")
		_, err := svc.Grant(context.Background(), caller("Bearer "+f.session), "n")
		// deputy's misconfiguration is not the caller's fault.
		if code := deputy.ErrorCode(err); code != deputy.EINTERNAL {
			t.Fatalf("Grant: err = %v (code %s); want EINTERNAL", err, code)
		}
		if strings.Contains(err.Error(), "not-the-shared-secret") ||
			strings.Contains(err.Error(), f.session) {
			t.Fatalf("error %q leaks a secret", err)
		}
	})
	t.Run("ErrUnavailable", func(t *testing.T) {
		t.Parallel()
		ts := httptest.NewServer(http.NotFoundHandler())
		ts.Close()
		svc := mustNew(t, ts.URL, sharedSecret)
		_, err := svc.Grant(context.Background(), caller("Bearer essu_session"), "n")
		if code := deputy.ErrorCode(err); code != deputy.EUNAVAILABLE {
			t.Fatalf("Grant: err = %v (code %s); want EUNAVAILABLE", err, code)
		}
	})
}

// TestService_Grant_Wire pins the request Kibana's UIAM client sends.
func TestService_Grant_Wire(t *testing.T) {
	t.Parallel()

	var got *http.Request
	var body []byte
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"k1","key":"essu_secret","description":"d"}`)
	}))
	t.Cleanup(ts.Close)

	svc := mustNew(t, ts.URL+"/", sharedSecret)
	k, err := svc.Grant(context.Background(), caller("Bearer essu_session"), "deputy: report")
	if err != nil || k.ID != "k1" || k.Secret.Reveal() != "essu_secret" {
		t.Fatalf("Grant = %+v, %v", k, err)
	}
	if got.Method != "POST" || got.URL.Path != "/uiam/api/v1/api-keys/_grant" {
		t.Fatalf("request %s %s; want POST /uiam/api/v1/api-keys/_grant", got.Method, got.URL.Path)
	}
	if a := got.Header.Get("Authorization"); a != "Bearer essu_session" {
		t.Fatalf("Authorization %q; want the caller's", a)
	}
	if s := got.Header.Get("x-client-authentication"); s != sharedSecret {
		t.Fatalf("x-client-authentication %q; want the shared secret", s)
	}
	want := `{"description":"deputy: report","internal":true,` +
		`"role_assignments":{"limit":{"access":["application"],"resource":["project"]}}}`
	if mustCanonical(t, string(body)) != mustCanonical(t, want) {
		t.Fatalf("body %s; want %s", body, want)
	}
}

// mustCanonical re-encodes a JSON document with sorted keys.
func mustCanonical(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("unmarshal %s: %v", s, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestService_Invalidate(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		var keys []deputy.InvalidateKey
		for range 12 {
			k, err := f.svc.Grant(context.Background(), caller("Bearer "+f.session), "n")
			if err != nil {
				t.Fatalf("Grant: %v", err)
			}
			keys = append(keys, deputy.InvalidateKey{ID: k.ID, Secret: k.Secret})
		}
		for i, err := range f.svc.Invalidate(context.Background(), keys) {
			if err != nil {
				t.Fatalf("Invalidate key %d: %v", i, err)
			}
		}
		for _, k := range f.uiam.Keys() {
			if !k.Revoked {
				t.Fatalf("key %s not revoked", k.ID)
			}
		}

		// Revoked keys answer APIKEY_REVOKED, which counts as done.
		for i, err := range f.svc.Invalidate(context.Background(), keys) {
			if err != nil {
				t.Fatalf("Invalidate revoked key %d: %v", i, err)
			}
		}
	})
	t.Run("OKMissing", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		errs := f.svc.Invalidate(context.Background(),
			[]deputy.InvalidateKey{{ID: "purged", Secret: "essu_purged"}})
		if errs[0] != nil {
			t.Fatalf("Invalidate(unknown key): %v; want done", errs[0])
		}
	})
	t.Run("ErrPerKey", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		k1, _ := f.svc.Grant(context.Background(), caller("Bearer "+f.session), "n")
		k2, _ := f.svc.Grant(context.Background(), caller("Bearer "+f.session), "n")
		errs := f.svc.Invalidate(context.Background(), []deputy.InvalidateKey{
			{ID: k1.ID, Secret: k2.Secret}, // another key's secret: 403
			{ID: k2.ID},                    // no secret
		})
		if errs[0] == nil || !strings.Contains(errs[0].Error(), "403") {
			t.Fatalf("Invalidate with another key's secret: %v; want a 403 error", errs[0])
		}
		if strings.Contains(errs[0].Error(), k2.Secret.Reveal()) {
			t.Fatalf("error %q leaks the key", errs[0])
		}
		if deputy.ErrorCode(errs[1]) != deputy.EINVALID {
			t.Fatalf("Invalidate without a secret: %v; want EINVALID", errs[1])
		}
		if keys := f.uiam.Keys(); keys[0].Revoked || keys[1].Revoked {
			t.Fatalf("keys %+v; want neither revoked", keys)
		}

		// A revoked key cannot pass for another one either.
		_ = f.svc.Invalidate(context.Background(), []deputy.InvalidateKey{*asInvalidate(k2)})
		errs = f.svc.Invalidate(context.Background(),
			[]deputy.InvalidateKey{{ID: k1.ID, Secret: k2.Secret}})
		if errs[0] == nil {
			t.Fatalf("Invalidate with a revoked key's secret succeeded")
		}
	})
	t.Run("ErrUnavailable", func(t *testing.T) {
		t.Parallel()
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"code":"0x1","message":"down"}}`)
		}))
		t.Cleanup(ts.Close)
		svc := mustNew(t, ts.URL, sharedSecret)
		errs := svc.Invalidate(context.Background(), []deputy.InvalidateKey{{ID: "a", Secret: "s"}})
		if deputy.ErrorCode(errs[0]) != deputy.EUNAVAILABLE ||
			!strings.Contains(errs[0].Error(), "down") {
			t.Fatalf("Invalidate: %v; want EUNAVAILABLE with UIAM's message", errs[0])
		}
	})
}

// asInvalidate returns what invalidates k.
func asInvalidate(k *deputy.GrantedKey) *deputy.InvalidateKey {
	return &deputy.InvalidateKey{ID: k.ID, Secret: k.Secret}
}

func TestService_Header(t *testing.T) {
	t.Parallel()

	svc := mustNew(t, "https://uiam.example", sharedSecret)
	h := svc.Header("essu_key", false)
	if h.Get("Authorization") != "ApiKey essu_key" ||
		h.Get("x-client-authentication") != sharedSecret || len(h) != 2 {
		t.Fatalf("Header = %v", h)
	}
	// A key the user created is presented without the shared secret.
	h = svc.Header("essu_own", true)
	if h.Get("Authorization") != "ApiKey essu_own" || h.Get("x-client-authentication") != "" {
		t.Fatalf("Header of a user-created key = %v", h)
	}
	if svc.Kind() != "uiam" {
		t.Fatalf("Kind = %q; want uiam", svc.Kind())
	}
}
