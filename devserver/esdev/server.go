package esdev

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of [Config].
const (
	DefaultTokenTTL = 20 * time.Minute
	nativeRealm     = "default_native"
	nativeType      = "native"
	apiKeyRealm     = "_es_api_key"
	uiamRealm       = "uiam"
	maxBody         = 1 << 20
)

// Config configures a [Server].
type Config struct {
	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time

	// TokenTTL is how long access tokens live. Defaults to 20 minutes, as
	// in Elasticsearch.
	TokenTTL time.Duration

	// UIAMURL is the base URL of the UIAM stand-in that essu_ credentials
	// are checked with. Empty means essu_ credentials are rejected.
	UIAMURL string

	// UIAMSharedSecret is the secret shared with UIAM and its trusted
	// clients. The server sends it to UIAM and requires it from clients
	// presenting UIAM session tokens and internal UIAM keys.
	UIAMSharedSecret string

	// HTTPClient calls UIAM. Defaults to a client with a 10 second timeout.
	HTTPClient *http.Client

	// Logger receives one debug record per request: method, path and
	// status, never headers or bodies. Defaults to discarding.
	Logger *slog.Logger
}

// Server is the Elasticsearch stand-in. It is an http.Handler, safe for
// concurrent use.
type Server struct {
	now      func() time.Time
	tokenTTL time.Duration
	uiamURL  string
	uiamKey  string
	http     *http.Client
	log      *slog.Logger

	authenticates atomic.Int64

	mu         sync.Mutex
	users      map[string]*user    // guarded by mu
	roles      map[string][]string // guarded by mu
	tokens     map[digest]*token   // guarded by mu
	keys       map[string]*apiKey  // guarded by mu
	keyOrder   []*apiKey           // guarded by mu; in creation order
	failInvals map[string]string   // guarded by mu; id to reason
}

// digest is the SHA-256 of a secret: the server stores no secret.
type digest [sha256.Size]byte

func hash(s string) digest { return sha256.Sum256([]byte(s)) }

// user is a native user.
type user struct {
	name     string
	password digest
	roles    []string
}

// token is an access token.
type token struct {
	user    string
	roles   []string
	realm   realm
	expires time.Time
}

// realm names where a user comes from.
type realm struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// apiKey is an API key.
type apiKey struct {
	id              string
	name            string
	secret          digest
	owner           string
	realm           realm
	roles           []string // the owner's roles when the key was made
	roleDescriptors json.RawMessage
	metadata        map[string]any
	creation        time.Time
	expiration      time.Time // zero when it never expires
	invalidated     bool
	invalidation    time.Time
}

// KeyInfo describes an API key, for tests.
type KeyInfo struct {
	ID          string
	Name        string
	Owner       string
	Realm       string
	Metadata    map[string]any
	Invalidated bool
}

// New returns a server with no users and the built-in role "superuser".
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		now:        cfg.Now,
		tokenTTL:   cmp.Or(cfg.TokenTTL, DefaultTokenTTL),
		uiamURL:    cfg.UIAMURL,
		uiamKey:    cfg.UIAMSharedSecret,
		http:       cfg.HTTPClient,
		log:        cfg.Logger,
		users:      make(map[string]*user),
		roles:      map[string][]string{"superuser": {"all"}},
		tokens:     make(map[digest]*token),
		keys:       make(map[string]*apiKey),
		failInvals: make(map[string]string),
	}
}

// AddUser adds or replaces a native user. Roles that are not defined grant
// nothing, as in Elasticsearch.
func (s *Server) AddUser(name, password string, roles ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[name] = &user{name: name, password: hash(password), roles: slices.Clone(roles)}
}

// AddRole defines a role holding cluster privileges, such as
// "grant_api_key" or "manage_api_key".
func (s *Server) AddRole(name string, cluster ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roles[name] = slices.Clone(cluster)
}

// FailInvalidate makes invalidations of key id fail with reason, reported
// in error_details as Elasticsearch reports per-key failures. It is a test
// hook.
func (s *Server) FailInvalidate(id, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failInvals[id] = reason
}

// Keys returns every API key, in creation order.
func (s *Server) Keys() []KeyInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]KeyInfo, 0, len(s.keyOrder))
	for _, k := range s.keyOrder {
		out = append(out, KeyInfo{
			ID: k.id, Name: k.name, Owner: k.owner, Realm: k.realm.Name,
			Metadata: k.metadata, Invalidated: k.invalidated,
		})
	}
	return out
}

// AuthenticateCount returns how many GET /_security/_authenticate requests
// the server has answered.
func (s *Server) AuthenticateCount() int64 { return s.authenticates.Load() }

// ServeHTTP routes a request to its API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	w = sw
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	defer func() {
		s.log.Debug("request", slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Int("status", sw.status))
	}()

	type route struct {
		methods []string
		handle  func(http.ResponseWriter, *http.Request)
	}
	var rt route
	switch r.URL.Path {
	case "/_security/_authenticate":
		rt = route{[]string{http.MethodGet}, s.handleAuthenticate}
	case "/_security/oauth2/token":
		rt = route{[]string{http.MethodPost}, s.handleToken}
	case "/_security/api_key/grant":
		rt = route{[]string{http.MethodPost}, s.handleGrant}
	case "/_security/api_key":
		rt = route{[]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete},
			s.handleAPIKey}
	case "/_security/_query/api_key":
		rt = route{[]string{http.MethodGet, http.MethodPost}, s.handleQuery}
	default:
		writeRESTError(w, http.StatusBadRequest,
			"no handler found for uri ["+r.URL.Path+"] and method ["+r.Method+"]")
		return
	}
	if !slices.Contains(rt.methods, r.Method) {
		writeMethodNotAllowed(w, r, rt.methods)
		return
	}
	rt.handle(w, r)
}

// handleAPIKey serves /_security/api_key by method.
func (s *Server) handleAPIKey(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		s.handleGetKeys(w, r)
	case http.MethodDelete:
		s.handleInvalidate(w, r)
	default:
		s.handleCreate(w, r)
	}
}

// statusWriter records the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (sw *statusWriter) WriteHeader(code int) {
	sw.status = code
	sw.ResponseWriter.WriteHeader(code)
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readBody reads a request body, up to maxBody bytes.
func readBody(r *http.Request) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r.Body, maxBody))
}

// randomID returns a 20-character URL-safe id, as Elasticsearch's.
func randomID() string { return randomString(15) }

// randomString returns n random bytes, base64url-encoded without padding.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// millis returns t in epoch milliseconds.
func millis(t time.Time) int64 { return t.UnixMilli() }
