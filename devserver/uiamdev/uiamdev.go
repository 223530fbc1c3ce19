// Package uiamdev is a stand-in for the API key APIs of UIAM, Elastic
// Cloud's identity service, for development and tests only; it is not a
// security boundary. It keeps everything in memory and serves:
//
//	POST   /uiam/api/v1/api-keys/_grant                 grant a key
//	DELETE /uiam/api/v1/api-keys/{id}                   revoke a key, authenticated by itself
//	GET    /uiam/api/v1/api-keys                        list keys (stand-in specific)
//	GET    /uiam/api/v1/authentication/_authenticate    who a credential is (stand-in specific)
//
// Every request must carry the shared secret in the x-client-authentication
// header: without it the answer is 401, with a wrong one 403. Credentials
// are essu_ strings: session tokens from [Server.SessionToken], presented
// as "Bearer essu_...", and API keys, presented as "ApiKey essu_...".
//
// Errors are JSON {"error": {"code": "0x...", "message": "..."}}. The codes
// [CodeAPIKeyRevoked] and [CodeAPIKeyMissing] are UIAM's; the others, which
// start with 0xDE, belong to the stand-in.
//
// The authenticate endpoint is what the Elasticsearch stand-in asks to
// accept essu_ credentials; its answer is {"username", "roles", "type":
// "session" or "api_key", "api_key": {"id", "description", "internal"}}.
package uiamdev

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Error codes of UIAM answers.
const (
	// CodeAPIKeyRevoked means the key has been revoked (UIAM's code).
	CodeAPIKeyRevoked = "0xD38358"
	// CodeAPIKeyMissing means no key has the id (UIAM's code).
	CodeAPIKeyMissing = "0x28D520"

	// CodeInvalidCredentials means the credential is missing, malformed,
	// unknown or expired.
	CodeInvalidCredentials = "0xDE0001"
	// CodeClientAuthMissing means the x-client-authentication header is
	// missing.
	CodeClientAuthMissing = "0xDE0002"
	// CodeClientAuthInvalid means the x-client-authentication header does
	// not hold the shared secret.
	CodeClientAuthInvalid = "0xDE0003"
	// CodeForbidden means the credential may not act on the resource.
	CodeForbidden = "0xDE0004"
	// CodeBadRequest means the request body is invalid.
	CodeBadRequest = "0xDE0005"
	// CodeNotFound means no such endpoint.
	CodeNotFound = "0xDE0006"
	// CodeMethodNotAllowed means the endpoint does not serve the method.
	CodeMethodNotAllowed = "0xDE0007"
)

const (
	// Prefix starts every UIAM credential.
	Prefix = "essu_"
	// ClientAuthHeader carries the shared secret.
	ClientAuthHeader = "x-client-authentication"
	// DefaultSessionTTL is how long session tokens live by default.
	DefaultSessionTTL = time.Hour

	keysPath = "/uiam/api/v1/api-keys"
	maxBody  = 1 << 20
)

// Config configures a [Server].
type Config struct {
	// SharedSecret is the secret every client must present in the
	// x-client-authentication header. Required.
	SharedSecret string

	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time

	// SessionTTL is how long session tokens live. Defaults to
	// [DefaultSessionTTL].
	SessionTTL time.Duration

	// Logger receives one debug record per request: method, path and
	// status, never headers or bodies. Defaults to discarding.
	Logger *slog.Logger
}

// Server is the UIAM stand-in. It is an http.Handler, safe for concurrent
// use.
type Server struct {
	secret     string
	now        func() time.Time
	sessionTTL time.Duration
	log        *slog.Logger

	mu       sync.Mutex
	users    map[string][]string // guarded by mu; name to roles
	sessions map[digest]*session // guarded by mu
	keys     map[string]*apiKey  // guarded by mu; by id
	bySecret map[digest]*apiKey  // guarded by mu
	order    []*apiKey           // guarded by mu; in creation order
}

// digest is the SHA-256 of a credential: the server stores none.
type digest [sha256.Size]byte

func hash(s string) digest { return sha256.Sum256([]byte(s)) }

// session is a session token's state.
type session struct {
	user    string
	expires time.Time
}

// apiKey is a UIAM API key.
type apiKey struct {
	id          string
	description string
	owner       string
	internal    bool
	created     time.Time
	expiration  time.Time // zero when it never expires
	revoked     bool
	revokedAt   time.Time
}

// KeyInfo describes a key, for tests.
type KeyInfo struct {
	ID          string
	Description string
	Owner       string
	Internal    bool
	Revoked     bool
	Created     time.Time
	RevokedAt   time.Time
}

// New returns a server with no users. It panics without a shared secret.
func New(cfg Config) *Server {
	if cfg.SharedSecret == "" {
		panic("uiamdev: Config.SharedSecret is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		secret:     cfg.SharedSecret,
		now:        cfg.Now,
		sessionTTL: cmp.Or(cfg.SessionTTL, DefaultSessionTTL),
		log:        cfg.Logger,
		users:      make(map[string][]string),
		sessions:   make(map[digest]*session),
		keys:       make(map[string]*apiKey),
		bySecret:   make(map[digest]*apiKey),
	}
}

// AddUser adds or replaces a user.
func (s *Server) AddUser(name string, roles ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[name] = slices.Clone(roles)
}

// SessionToken issues an essu_ session token for user, to present as
// "Bearer <token>". It panics if the user does not exist.
func (s *Server) SessionToken(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[user]; !ok {
		panic("uiamdev: SessionToken: unknown user " + user)
	}
	tok := newCredential()
	s.sessions[hash(tok)] = &session{user: user, expires: s.now().Add(s.sessionTTL)}
	return tok
}

// CreateKey creates a user-created (external, organization-level) key for
// user, as a user would in the Cloud console, and returns its id and
// secret. It panics if the user does not exist.
func (s *Server) CreateKey(user, description string) (id, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[user]; !ok {
		panic("uiamdev: CreateKey: unknown user " + user)
	}
	k, secret := s.newKeyLocked(user, description, false, 0)
	return k.id, secret
}

// newKeyLocked stores a new key and returns it with its secret.
func (s *Server) newKeyLocked(
	owner, description string, internal bool, ttl time.Duration,
) (*apiKey, string) {
	secret := newCredential()
	k := &apiKey{
		id:          randomString(15),
		description: description,
		owner:       owner,
		internal:    internal,
		created:     s.now(),
	}
	if ttl > 0 {
		k.expiration = k.created.Add(ttl)
	}
	s.keys[k.id] = k
	s.bySecret[hash(secret)] = k
	s.order = append(s.order, k)
	return k, secret
}

// Keys returns every key, in creation order.
func (s *Server) Keys() []KeyInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]KeyInfo, 0, len(s.order))
	for _, k := range s.order {
		out = append(out, k.info())
	}
	return out
}

func (k *apiKey) info() KeyInfo {
	return KeyInfo{
		ID: k.id, Description: k.description, Owner: k.owner, Internal: k.internal,
		Revoked: k.revoked, Created: k.created, RevokedAt: k.revokedAt,
	}
}

// ServeHTTP routes a request to its endpoint, after checking the shared
// secret.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	w = sw
	defer func() {
		s.log.Debug("request", slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Int("status", sw.status))
	}()

	var method string
	var handle func(http.ResponseWriter, *http.Request)
	switch id, isKey := strings.CutPrefix(r.URL.Path, keysPath+"/"); {
	case r.URL.Path == keysPath+"/_grant":
		method, handle = http.MethodPost, s.handleGrant
	case r.URL.Path == keysPath:
		method, handle = http.MethodGet, s.handleList
	case r.URL.Path == "/uiam/api/v1/authentication/_authenticate":
		method, handle = http.MethodGet, s.handleAuthenticate
	case isKey && id != "" && !strings.Contains(id, "/"):
		method = http.MethodDelete
		handle = func(w http.ResponseWriter, r *http.Request) { s.handleRevoke(w, r, id) }
	default:
		writeError(w, http.StatusNotFound, CodeNotFound, "no endpoint at "+r.URL.Path)
		return
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
			r.Method+" is not allowed on "+r.URL.Path)
		return
	}
	if !s.clientAuthenticated(w, r) {
		return
	}
	handle(w, r)
}

// clientAuthenticated checks the shared secret, answering when it fails.
func (s *Server) clientAuthenticated(w http.ResponseWriter, r *http.Request) bool {
	v := r.Header.Get(ClientAuthHeader)
	switch {
	case v == "":
		writeError(w, http.StatusUnauthorized, CodeClientAuthMissing,
			"missing client authentication")
		return false
	case subtle.ConstantTimeCompare([]byte(v), []byte(s.secret)) != 1:
		writeError(w, http.StatusForbidden, CodeClientAuthInvalid,
			"invalid client authentication")
		return false
	}
	return true
}

// apiError is an error answer.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) write(w http.ResponseWriter) { writeError(w, e.status, e.code, e.message) }

// writeError writes {"error": {"code": code, "message": msg}} with status.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
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

// readBody reads a request body, up to maxBody bytes.
func readBody(r *http.Request) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r.Body, maxBody))
}

// newCredential returns a random essu_ credential with 256 bits of entropy.
func newCredential() string { return Prefix + randomString(32) }

// randomString returns n random bytes, base64url-encoded without padding.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return base64.RawURLEncoding.EncodeToString(b)
}
