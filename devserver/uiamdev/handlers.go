package uiamdev

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// identity is who a credential authenticates as.
type identity struct {
	user string
	key  *apiKey // nil for a session
}

// authenticate checks the request's essu_ credential.
func (s *Server) authenticate(r *http.Request) (*identity, *apiError) {
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.HasPrefix(cred, Prefix) {
		return nil, invalidCredentials()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		sess, ok := s.sessions[hash(cred)]
		if !ok || !s.now().Before(sess.expires) {
			return nil, invalidCredentials()
		}
		return &identity{user: sess.user}, nil
	case strings.EqualFold(scheme, "ApiKey"):
		k, ok := s.bySecret[hash(cred)]
		if !ok {
			return nil, invalidCredentials()
		}
		if e := k.usable(s.now()); e != nil {
			return nil, e
		}
		return &identity{user: k.owner, key: k}, nil
	}
	return nil, invalidCredentials()
}

// usable reports why k cannot authenticate, if it cannot.
func (k *apiKey) usable(now time.Time) *apiError {
	switch {
	case k.revoked:
		return &apiError{http.StatusUnauthorized, CodeAPIKeyRevoked,
			"api key " + k.id + " has been revoked"}
	case !k.expiration.IsZero() && !now.Before(k.expiration):
		return &apiError{http.StatusUnauthorized, CodeInvalidCredentials,
			"api key " + k.id + " has expired"}
	}
	return nil
}

func invalidCredentials() *apiError {
	return &apiError{http.StatusUnauthorized, CodeInvalidCredentials,
		"missing or invalid credentials"}
}

func badRequest(msg string) *apiError {
	return &apiError{http.StatusBadRequest, CodeBadRequest, msg}
}

// grantRequest is the body of a grant.
type grantRequest struct {
	Description     string `json:"description"`
	Internal        bool   `json:"internal"`
	Expiration      string `json:"expiration"`
	RoleAssignments *struct {
		Limit *struct {
			Access   []string `json:"access"`
			Resource []string `json:"resource"`
		} `json:"limit"`
	} `json:"role_assignments"`
}

// parseGrant decodes and validates a grant body. Unknown fields are
// rejected.
func parseGrant(body []byte) (*grantRequest, time.Duration, *apiError) {
	var g grantRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		return nil, 0, badRequest("request body is not a valid grant request")
	}
	if strings.TrimSpace(g.Description) == "" {
		return nil, 0, badRequest("description is required")
	}
	if ra := g.RoleAssignments; ra != nil &&
		(ra.Limit == nil || len(ra.Limit.Access) == 0 || len(ra.Limit.Resource) == 0) {
		return nil, 0, badRequest("role_assignments.limit needs access and resource")
	}
	var ttl time.Duration
	if g.Expiration != "" {
		var ok bool
		if ttl, ok = parseDuration(g.Expiration); !ok {
			return nil, 0, badRequest("expiration must be a duration such as 30d or 12h")
		}
	}
	return &g, ttl, nil
}

var durationRE = regexp.MustCompile(`^(\d+)([smhd])$`)

// parseDuration parses a positive duration such as "30d".
func parseDuration(s string) (time.Duration, bool) {
	m := durationRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	unit := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour,
		"d": 24 * time.Hour}[m[2]]
	return time.Duration(n) * unit, err == nil && n > 0
}

// handleGrant serves POST /uiam/api/v1/api-keys/_grant: a key for the user
// the request's credential belongs to.
func (s *Server) handleGrant(w http.ResponseWriter, r *http.Request) {
	id, e := s.authenticate(r)
	if e != nil {
		e.write(w)
		return
	}
	body, err := readBody(r)
	if err != nil {
		badRequest("unreadable body").write(w)
		return
	}
	g, ttl, e := parseGrant(body)
	if e != nil {
		e.write(w)
		return
	}
	s.mu.Lock()
	k, secret := s.newKeyLocked(id.user, g.Description, g.Internal, ttl)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{
		"id": k.id, "key": secret, "description": k.description,
	})
}

// handleRevoke serves DELETE /uiam/api/v1/api-keys/{id}. A key revokes only
// itself, authenticated by its own secret.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, id string) {
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "ApiKey") || !strings.HasPrefix(cred, Prefix) {
		invalidCredentials().write(w)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.bySecret[hash(cred)]
	_, exists := s.keys[id]
	var e *apiError
	switch {
	case !ok && !exists:
		e = &apiError{http.StatusNotFound, CodeAPIKeyMissing, "api key " + id + " not found"}
	case !ok:
		e = invalidCredentials()
	case k.id != id:
		e = &apiError{http.StatusForbidden, CodeForbidden, "an api key can only revoke itself"}
	case k.revoked:
		e = k.usable(s.now())
	}
	if e != nil {
		e.write(w)
		return
	}
	k.revoked, k.revokedAt = true, s.now()
	writeJSON(w, http.StatusOK, map[string]any{})
}

// handleList serves GET /uiam/api/v1/api-keys: every key the stand-in
// issued, with its state.
func (s *Server) handleList(w http.ResponseWriter, _ *http.Request) {
	type keyJSON struct {
		ID          string     `json:"id"`
		Description string     `json:"description"`
		Owner       string     `json:"owner"`
		Internal    bool       `json:"internal"`
		Revoked     bool       `json:"revoked"`
		Created     time.Time  `json:"created"`
		RevokedAt   *time.Time `json:"revoked_at,omitempty"`
		Expiration  *time.Time `json:"expiration,omitempty"`
	}
	s.mu.Lock()
	keys := make([]keyJSON, 0, len(s.order))
	for _, k := range s.order {
		kj := keyJSON{ID: k.id, Description: k.description, Owner: k.owner,
			Internal: k.internal, Revoked: k.revoked, Created: k.created}
		if k.revoked {
			kj.RevokedAt = &k.revokedAt
		}
		if !k.expiration.IsZero() {
			kj.Expiration = &k.expiration
		}
		keys = append(keys, kj)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"api_keys": keys})
}

// handleAuthenticate serves GET /uiam/api/v1/authentication/_authenticate,
// the stand-in's endpoint for the Elasticsearch stand-in.
func (s *Server) handleAuthenticate(w http.ResponseWriter, r *http.Request) {
	id, e := s.authenticate(r)
	if e != nil {
		e.write(w)
		return
	}
	s.mu.Lock()
	resp := map[string]any{
		"username": id.user,
		"roles":    append([]string{}, s.users[id.user]...),
		"type":     "session",
	}
	if id.key != nil {
		resp["type"] = "api_key"
		resp["api_key"] = map[string]any{"id": id.key.id, "description": id.key.description,
			"internal": id.key.internal}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}
