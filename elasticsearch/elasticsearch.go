package elasticsearch

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/deputyhq/deputy"
)

// Kind is the kind of the keys [Service] grants.
const Kind = "es"

// DefaultCacheTTL is how long [Service.Authenticate] caches a successful
// authentication by default.
const DefaultCacheTTL = 30 * time.Second

// maxBody bounds how much of a response is read.
const maxBody = 1 << 20

// Config configures a [Service].
type Config struct {
	// URL is the base URL of Elasticsearch, such as
	// "https://localhost:9200". It must not carry credentials.
	URL string

	// Username and Password are the credentials of deputy's service user.
	// Set them or APIKey, not both.
	Username string
	Password deputy.Secret

	// APIKey is deputy's own API key, base64(id:api_key), used instead of
	// Username and Password.
	APIKey deputy.Secret

	// CA holds PEM-encoded certificate authorities to trust instead of the
	// system's. It requires Transport to be nil or an *http.Transport.
	CA []byte

	// UIAMSharedSecret is the shared secret deputy presents for UIAM
	// credentials, as Kibana does in serverless projects: it is sent as
	// client_authentication when granting a key for an essu_ access token,
	// and as the x-client-authentication header when authenticating an
	// essu_ bearer token. Optional.
	UIAMSharedSecret deputy.Secret

	// CacheTTL is how long a successful authentication is cached. Zero
	// means [DefaultCacheTTL]; a negative value disables the cache.
	CacheTTL time.Duration

	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time

	// Transport carries the requests. Defaults to the client's transport.
	Transport http.RoundTripper

	// Logger receives debug records about invalidations. Defaults to
	// discarding.
	Logger *slog.Logger
}

// WithDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.CacheTTL = cmp.Or(c.CacheTTL, DefaultCacheTTL)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate reports the first invalid field of c.
func (c Config) validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("URL is required")
	case err != nil:
		return errors.New("URL is not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return errors.New("URL must be an http or https URL with a host")
	case u.User != nil:
		return errors.New("URL must not carry credentials; set Username and Password")
	case c.APIKey != "" && (c.Username != "" || c.Password != ""):
		return errors.New("set either Username and Password or APIKey, not both")
	case c.APIKey == "" && (c.Username == "" || c.Password == ""):
		return errors.New("Username and Password, or APIKey, are required")
	}
	return nil
}

// Service grants, invalidates and authenticates with Elasticsearch API
// keys. It implements [deputy.KeyService] and [deputy.Authenticator], and is
// safe for concurrent use.
type Service struct {
	client       *elasticsearch.BaseClient
	sharedSecret deputy.Secret
	secrets      []string // the service's own secrets, redacted from errors
	ttl          time.Duration
	now          func() time.Time
	log          *slog.Logger

	mu    sync.Mutex
	cache map[cacheKey]cacheEntry // guarded by mu
}

var (
	_ deputy.KeyService    = (*Service)(nil)
	_ deputy.Authenticator = (*Service)(nil)
)

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("elasticsearch: config: %w", err)
	}
	cfg = cfg.WithDefaults()

	client, err := elasticsearch.NewBaseClient(elasticsearch.Config{
		Addresses: []string{cfg.URL},
		Username:  cfg.Username,
		Password:  cfg.Password.Reveal(),
		APIKey:    cfg.APIKey.Reveal(),
		CACert:    cfg.CA,
		Transport: cfg.Transport,
		// NB: a retried grant could create a second key that nothing
		// records; callers retry at their level instead.
		DisableRetry: true,
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: new client: %w", err)
	}
	return &Service{
		client:       client,
		sharedSecret: cfg.UIAMSharedSecret,
		secrets: nonEmpty(cfg.Password.Reveal(), cfg.APIKey.Reveal(),
			cfg.UIAMSharedSecret.Reveal()),
		ttl:   cfg.CacheTTL,
		now:   cfg.Now,
		log:   cfg.Logger,
		cache: make(map[cacheKey]cacheEntry),
	}, nil
}

// Kind returns "es".
func (s *Service) Kind() string { return Kind }

// Header returns "Authorization: ApiKey <secret>", where secret is
// base64(id:api_key).
func (s *Service) Header(secret deputy.Secret, _ bool) http.Header {
	return http.Header{"Authorization": {"ApiKey " + secret.Reveal()}}
}

// do performs req and returns the response's status and body. It fails
// only when no response arrived.
func (s *Service) do(ctx context.Context, req esapi.Request) (int, []byte, error) {
	res, err := req.Do(ctx, s.client)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return 0, nil, fmt.Errorf("read response: %w", err)
	}
	return res.StatusCode, body, nil
}

// unavailable wraps a failure to reach Elasticsearch, or an answer that
// says it is temporarily unable to serve.
func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, err,
		deputy.Errorf(deputy.EUNAVAILABLE, "elasticsearch is unavailable"))
}

// transient reports whether a status means Elasticsearch may succeed later.
func transient(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// statusError describes a non-2xx answer by its status and Elasticsearch's
// error type and reason, with secrets redacted.
func (s *Service) statusError(status int, body []byte, secrets ...string) error {
	typ, reason := errorReason(body)
	msg := fmt.Sprintf("elasticsearch: status %d", status)
	if typ != "" {
		msg += " " + typ
	}
	if reason != "" {
		msg += ": " + reason
	}
	return errors.New(redact(msg, append(secrets, s.secrets...)...))
}

// errorReason returns the type and reason of an Elasticsearch error body:
// {"error": {"type": ..., "reason": ...}, "status": ...}, or
// {"error": "...", "status": ...} for errors of the REST layer.
func errorReason(body []byte) (typ, reason string) {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Error) == 0 {
		return "", ""
	}
	var detail struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}
	if json.Unmarshal(e.Error, &detail) == nil {
		return detail.Type, detail.Reason
	}
	var text string
	if json.Unmarshal(e.Error, &text) == nil {
		return "", text
	}
	return "", ""
}

// redact replaces every occurrence of the secrets in s.
func redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		// NB: very short values would redact ordinary words; the secrets
		// this package handles are long.
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	return s
}

// nonEmpty returns the non-empty strings among ss.
func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
