package elasticsearch

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/deputyhq/deputy"
)

// maxCacheEntries bounds the authentication cache.
const maxCacheEntries = 10_000

// cacheKey is the SHA-256 of an Authorization header: the cache never holds
// the header itself.
type cacheKey [sha256.Size]byte

// cacheEntry is a cached authentication. Its caller has no Authorization.
type cacheEntry struct {
	caller  deputy.Caller
	expires time.Time
}

// authenticateResponse is the part of GET /_security/_authenticate's answer
// deputy uses.
type authenticateResponse struct {
	Username           string   `json:"username"`
	Roles              []string `json:"roles"`
	AuthenticationType string   `json:"authentication_type"`
	APIKey             *struct {
		ID string `json:"id"`
	} `json:"api_key"`
}

// Authenticate returns who authorization authenticates as at Elasticsearch,
// or an EUNAUTHORIZED error. Successful results are cached for the
// configured TTL, keyed by a hash of the header.
func (s *Service) Authenticate(
	ctx context.Context, authorization deputy.Secret,
) (*deputy.Caller, error) {
	// NB: without an Authorization header the client would send deputy's
	// own credentials, and deputy's service user would be the caller.
	scheme, cred, ok := splitAuthorization(authorization.Reveal())
	if !ok {
		return nil, deputy.Errorf(deputy.EUNAUTHORIZED, "missing or malformed credentials")
	}
	key := cacheKey(sha256.Sum256([]byte(authorization.Reveal())))
	if c, ok := s.cached(key); ok {
		c.Authorization = authorization
		return c, nil
	}

	header := http.Header{"Authorization": {scheme + " " + cred}}
	if scheme == schemeBearer && strings.HasPrefix(cred, uiamPrefix) && s.sharedSecret != "" {
		header.Set("x-client-authentication", s.sharedSecret.Reveal())
	}
	const op = "authenticate"
	status, body, err := s.do(ctx, esapi.SecurityAuthenticateRequest{Header: header})
	switch {
	case err != nil:
		return nil, unavailable(op, err)
	case status == http.StatusUnauthorized:
		return nil, deputy.Errorf(deputy.EUNAUTHORIZED, "invalid credentials")
	case transient(status):
		return nil, unavailable(op, s.statusError(status, body, cred))
	case status != http.StatusOK:
		return nil, fmt.Errorf("%s: %w", op, s.statusError(status, body, cred))
	}

	var r authenticateResponse
	if err := json.Unmarshal(body, &r); err != nil || r.Username == "" {
		return nil, fmt.Errorf("%s: response without a username", op)
	}
	c := deputy.Caller{
		UserName:           r.Username,
		Roles:              r.Roles,
		AuthenticationType: r.AuthenticationType,
	}
	if r.APIKey != nil {
		c.APIKeyID = r.APIKey.ID
	}
	s.store(key, c)
	c.Authorization = authorization
	return &c, nil
}

// cached returns a copy of the cached caller for key, if it has not
// expired.
func (s *Service) cached(key cacheKey) (*deputy.Caller, bool) {
	if s.ttl < 0 {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.cache[key]
	if !ok || !s.now().Before(e.expires) {
		return nil, false
	}
	c := e.caller
	c.Roles = slices.Clone(c.Roles)
	return &c, true
}

// store caches c under key, evicting expired entries when the cache is
// full, and arbitrary ones if that is not enough.
func (s *Service) store(key cacheKey, c deputy.Caller) {
	if s.ttl < 0 {
		return
	}
	c.Roles = slices.Clone(c.Roles)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.cache) >= maxCacheEntries {
		for k, e := range s.cache {
			if !now.Before(e.expires) {
				delete(s.cache, k)
			}
		}
		for k := range s.cache {
			if len(s.cache) < maxCacheEntries {
				break
			}
			delete(s.cache, k)
		}
	}
	s.cache[key] = cacheEntry{caller: c, expires: now.Add(s.ttl)}
}
