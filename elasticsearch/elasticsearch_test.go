package elasticsearch_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/devserver/devtest"
	"github.com/deputyhq/deputy/devserver/esdev"
	"github.com/deputyhq/deputy/devserver/uiamdev"
	"github.com/deputyhq/deputy/elasticsearch"
)

const sharedSecret = devtest.SharedSecret

// fixture is an Elasticsearch stand-in, backed by a UIAM stand-in, and a
// Service that calls it as the service user "deputy". Users: alice and bob
// at Elasticsearch, carol at UIAM.
type fixture struct {
	es       *esdev.Server
	uiam     *uiamdev.Server
	url      string
	clock    *devtest.Clock
	svc      *elasticsearch.Service
	requests *counter
	session  string // carol's UIAM session token
}

func setup(t *testing.T) *fixture {
	t.Helper()
	st := devtest.Start(t, nil)
	st.UIAM.AddUser("carol", "editor")
	es := st.ES
	es.AddRole("deputy", "grant_api_key", "manage_api_key")
	es.AddRole("grant_only", "grant_api_key")
	es.AddUser("deputy", "deputy-password", "deputy")
	es.AddUser("granter", "granter-password", "grant_only")
	es.AddUser("alice", "alice-password", "viewer")
	es.AddUser("bob", "bob-password", "superuser")

	f := &fixture{es: es, uiam: st.UIAM, url: st.ESURL, clock: st.Clock, requests: &counter{},
		session: st.UIAM.SessionToken("carol")}
	f.svc = f.service(t, elasticsearch.Config{})
	return f
}

// noSharedSecret asks fixture.service for a Service without a UIAM shared
// secret.
const noSharedSecret = "-"

// service returns a Service for the stand-in, calling it as deputy with the
// UIAM shared secret unless cfg says otherwise.
func (f *fixture) service(t *testing.T, cfg elasticsearch.Config) *elasticsearch.Service {
	t.Helper()
	cfg.URL = f.url
	if cfg.Username == "" && cfg.APIKey == "" {
		cfg.Username, cfg.Password = "deputy", "deputy-password"
	}
	switch cfg.UIAMSharedSecret {
	case "":
		cfg.UIAMSharedSecret = sharedSecret
	case noSharedSecret:
		cfg.UIAMSharedSecret = ""
	}
	cfg.Now = f.clock.Now
	cfg.Transport = f.requests.wrap(http.DefaultTransport)
	svc, err := elasticsearch.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return svc
}

// counter counts requests by method.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		c.mu.Lock()
		if c.n == nil {
			c.n = map[string]int{}
		}
		c.n[r.Method]++
		c.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

func (c *counter) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// caller returns a caller presenting authorization.
func caller(authorization string) *deputy.Caller {
	return &deputy.Caller{Authorization: deputy.Secret(authorization)}
}

// mustGrant grants a key for authorization or fails the test.
func (f *fixture) mustGrant(t *testing.T, authorization string) *deputy.GrantedKey {
	t.Helper()
	k, err := f.svc.Grant(context.Background(), caller(authorization), "deputy: report")
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	return k
}

// wantCode fails unless err carries the domain error code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := deputy.ErrorCode(err); got != code {
		t.Fatalf("err = %v (code %q); want code %q", err, got, code)
	}
}

// closedURL returns the URL of a server that is no longer listening.
func closedURL() string {
	ts := httptest.NewServer(http.NotFoundHandler())
	ts.Close()
	return ts.URL
}

func TestNew(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name string
		cfg  elasticsearch.Config
	}{
		{"ErrNoURL", elasticsearch.Config{Username: "u", Password: "p"}},
		{"ErrRelativeURL", elasticsearch.Config{URL: "localhost:9200", Username: "u",
			Password: "p"}},
		{"ErrCredentialsInURL", elasticsearch.Config{URL: "https://u:p@localhost:9200"}},
		{"ErrNoCredentials", elasticsearch.Config{URL: "https://localhost:9200"}},
		{"ErrNoPassword", elasticsearch.Config{URL: "https://localhost:9200", Username: "u"}},
		{"ErrBothCredentials", elasticsearch.Config{URL: "https://localhost:9200",
			Username: "u", Password: "p", APIKey: "k"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := elasticsearch.New(tc.cfg); err == nil {
				t.Fatalf("New succeeded")
			}
		})
	}
}
