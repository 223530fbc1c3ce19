package elasticsearch_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/elasticsearch"
)

func TestService_Authenticate(t *testing.T) {
	t.Parallel()

	t.Run("OKBasic", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		auth := deputy.Secret(basic("alice", "alice-password"))
		c, err := f.svc.Authenticate(context.Background(), auth)
		if err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		if c.UserName != "alice" || !slices.Equal(c.Roles, []string{"viewer"}) ||
			c.AuthenticationType != "realm" || c.APIKeyID != "" || c.Authorization != auth {
			t.Fatalf("Authenticate = %+v; want alice by realm", c)
		}
	})
	t.Run("OKAPIKey", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		k := f.mustGrant(t, basic("alice", "alice-password"))
		c, err := f.svc.Authenticate(context.Background(), deputy.Secret("ApiKey "+k.Secret))
		if err != nil || c.UserName != "alice" || c.AuthenticationType != "api_key" ||
			c.APIKeyID != k.ID {
			t.Fatalf("Authenticate = %+v, %v; want alice by api key %s", c, err, k.ID)
		}
	})
	t.Run("OKUIAMSession", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		c, err := f.svc.Authenticate(context.Background(), deputy.Secret("Bearer "+f.session))
		if err != nil || c.UserName != "carol" || c.AuthenticationType != "token" {
			t.Fatalf("Authenticate = %+v, %v; want carol by token", c, err)
		}
	})
	t.Run("OKUIAMKey", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		id, key := f.uiam.CreateKey("carol", "console key")
		c, err := f.svc.Authenticate(context.Background(), deputy.Secret("ApiKey "+key))
		if err != nil || c.UserName != "carol" || c.APIKeyID != id {
			t.Fatalf("Authenticate = %+v, %v; want carol's key %s", c, err, id)
		}
	})
	for _, tc := range []struct{ name, auth string }{
		{"ErrPassword", basic("alice", "wrong")},
		{"ErrKey", "ApiKey bm9zdWNoOmtleQ=="},
		{"ErrScheme", "Digest abc"},
		{"ErrUIAMSession", "Bearer essu_unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			_, err := f.svc.Authenticate(context.Background(), deputy.Secret(tc.auth))
			wantCode(t, err, deputy.EUNAUTHORIZED)
		})
	}
	t.Run("ErrUIAMSessionWithoutSharedSecret", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		svc := f.service(t, elasticsearch.Config{UIAMSharedSecret: noSharedSecret})
		_, err := svc.Authenticate(context.Background(), deputy.Secret("Bearer "+f.session))
		wantCode(t, err, deputy.EUNAUTHORIZED)
	})
	t.Run("ErrNoCredentials", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		// Without credentials, the client would present deputy's own: the
		// service must not ask Elasticsearch at all.
		for _, auth := range []string{"", "  ", "Basic", "Bearer "} {
			c, err := f.svc.Authenticate(context.Background(), deputy.Secret(auth))
			if c != nil {
				t.Fatalf("Authenticate(%q) = %+v; want no caller", auth, c)
			}
			wantCode(t, err, deputy.EUNAUTHORIZED)
		}
		if n := f.es.AuthenticateCount(); n != 0 {
			t.Fatalf("%d authenticate requests; want none", n)
		}
	})
	t.Run("ErrUnavailable", func(t *testing.T) {
		t.Parallel()
		svc, _ := elasticsearch.New(elasticsearch.Config{URL: closedURL(), Username: "deputy",
			Password: "deputy-password"})
		_, err := svc.Authenticate(context.Background(), deputy.Secret(basic("a", "b")))
		wantCode(t, err, deputy.EUNAVAILABLE)
	})
}

func TestService_Authenticate_Cache(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		alice := deputy.Secret(basic("alice", "alice-password"))
		c1, err := f.svc.Authenticate(context.Background(), alice)
		if err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		c1.Roles[0] = "mutated"
		c2, err := f.svc.Authenticate(context.Background(), alice)
		if err != nil || c2.UserName != "alice" || c2.Roles[0] != "viewer" ||
			c2.Authorization != alice {
			t.Fatalf("cached Authenticate = %+v, %v; want an unchanged copy", c2, err)
		}
		if n := f.es.AuthenticateCount(); n != 1 {
			t.Fatalf("%d authenticate requests; want 1", n)
		}

		// Another header is another entry.
		if _, err := f.svc.Authenticate(context.Background(),
			deputy.Secret(basic("bob", "bob-password"))); err != nil {
			t.Fatalf("Authenticate bob: %v", err)
		}
		if n := f.es.AuthenticateCount(); n != 2 {
			t.Fatalf("%d authenticate requests; want 2", n)
		}

		// Entries expire after the TTL.
		f.clock.Add(elasticsearch.DefaultCacheTTL - time.Nanosecond)
		_, _ = f.svc.Authenticate(context.Background(), alice)
		if n := f.es.AuthenticateCount(); n != 2 {
			t.Fatalf("%d authenticate requests before the TTL; want 2", n)
		}
		f.clock.Add(time.Nanosecond)
		_, _ = f.svc.Authenticate(context.Background(), alice)
		if n := f.es.AuthenticateCount(); n != 3 {
			t.Fatalf("%d authenticate requests after the TTL; want 3", n)
		}
	})
	t.Run("OKFailuresNotCached", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		for range 2 {
			_, _ = f.svc.Authenticate(context.Background(), deputy.Secret(basic("alice", "no")))
		}
		if n := f.es.AuthenticateCount(); n != 2 {
			t.Fatalf("%d authenticate requests; want 2", n)
		}
	})
	t.Run("OKDisabled", func(t *testing.T) {
		t.Parallel()
		f := setup(t)
		svc := f.service(t, elasticsearch.Config{CacheTTL: -1})
		for range 3 {
			if _, err := svc.Authenticate(context.Background(),
				deputy.Secret(basic("alice", "alice-password"))); err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
		}
		if n := f.es.AuthenticateCount(); n != 3 {
			t.Fatalf("%d authenticate requests; want 3", n)
		}
	})
}

func TestService_Header(t *testing.T) {
	t.Parallel()

	f := setup(t)
	h := f.svc.Header("aWQ6a2V5", false)
	if h.Get("Authorization") != "ApiKey aWQ6a2V5" || len(h) != 1 {
		t.Fatalf("Header = %v", h)
	}
	if f.svc.Kind() != "es" {
		t.Fatalf("Kind = %q; want es", f.svc.Kind())
	}
}
