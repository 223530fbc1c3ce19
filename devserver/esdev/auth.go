package esdev

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

const (
	uiamPrefix           = "essu_"
	clientAuthHeader     = "x-client-authentication"
	uiamAuthenticatePath = "/uiam/api/v1/authentication/_authenticate"
)

// principal is who a request authenticated as.
type principal struct {
	username string
	roles    []string // whose cluster privileges apply
	home     realm    // the realm keys the principal creates are owned in
	authRealm,
	lookupRealm realm // as the authenticate API shows them
	authType string  // realm, token or api_key
	key      *apiKey // the ES key authenticated with, if any
	keyID    string  // the id of the ES or UIAM key authenticated with
	keyName  string
}

// action is a cluster action and the privileges that grant it.
type action struct {
	name       string
	privileges []string
}

// Actions the server authorizes.
var (
	actionGrant = action{"cluster:admin/xpack/security/api_key/grant",
		[]string{"grant_api_key", "manage_api_key", "manage_security", "all"}}
	actionCreate = action{"cluster:admin/xpack/security/api_key/create",
		[]string{"manage_own_api_key", "manage_api_key", "manage_security", "all"}}
	actionInvalidate = action{"cluster:admin/xpack/security/api_key/invalidate",
		[]string{"manage_api_key", "manage_security", "all"}}
	actionGet = action{"cluster:admin/xpack/security/api_key/get",
		[]string{"read_security", "manage_api_key", "manage_security", "all"}}
	actionQuery = action{"cluster:admin/xpack/security/api_key/query",
		[]string{"read_security", "manage_api_key", "manage_security", "all"}}
	actionToken = action{"cluster:admin/xpack/security/token/create",
		[]string{"manage_token", "manage_security", "all"}}
	// manageOwn is what lets a user act on their own keys.
	manageOwn = []string{"manage_own_api_key"}
)

// allowedLocked reports whether p holds any of privs through its roles.
func (s *Server) allowedLocked(p *principal, privs []string) bool {
	for _, r := range p.roles {
		for _, held := range s.roles[r] {
			if slices.Contains(privs, held) {
				return true
			}
		}
	}
	return false
}

// allowed reports whether p holds any of privs.
func (s *Server) allowed(p *principal, privs []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.allowedLocked(p, privs)
}

// authenticate authenticates a request by its Authorization header.
func (s *Server) authenticate(r *http.Request) (*principal, *esError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, unauthenticated("missing authentication credentials for REST request [%s]",
			r.URL.RequestURI())
	}
	scheme, cred, _ := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	switch {
	case strings.EqualFold(scheme, "Basic"):
		return s.authenticateBasic(r, cred)
	case strings.HasPrefix(cred, uiamPrefix) &&
		(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "ApiKey")):
		return s.authenticateUIAM(r.Context(), scheme+" "+cred, r.Header.Get(clientAuthHeader))
	case strings.EqualFold(scheme, "Bearer"):
		return s.authenticateToken(cred)
	case strings.EqualFold(scheme, "ApiKey"):
		return s.authenticateKey(cred)
	}
	return nil, unauthenticated(badCredentials)
}

// authenticateBasic checks a native user's password.
func (s *Server) authenticateBasic(r *http.Request, cred string) (*principal, *esError) {
	raw, err := base64.StdEncoding.DecodeString(cred)
	name, pass, ok := strings.Cut(string(raw), ":")
	if err != nil || !ok {
		return nil, unauthenticated(badCredentials)
	}
	u, ok := s.checkPassword(name, pass)
	if !ok {
		return nil, unauthenticated("unable to authenticate user [%s] for REST request [%s]",
			name, r.URL.RequestURI())
	}
	return userPrincipal(u.name, u.roles, "realm"), nil
}

// checkPassword returns the user named name if pass is their password.
func (s *Server) checkPassword(name, pass string) (*user, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[name]
	if !ok {
		return nil, false
	}
	h := hash(pass)
	return u, subtle.ConstantTimeCompare(h[:], u.password[:]) == 1
}

// userPrincipal returns a native user authenticated as authType.
func userPrincipal(name string, roles []string, authType string) *principal {
	native := realm{nativeRealm, nativeType}
	return &principal{username: name, roles: roles, home: native, authRealm: native,
		lookupRealm: native, authType: authType}
}

// authenticateToken checks an access token from the token API.
func (s *Server) authenticateToken(cred string) (*principal, *esError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[hash(cred)]
	if !ok || !s.now().Before(t.expires) {
		return nil, unauthenticated(badCredentials)
	}
	return &principal{username: t.user, roles: t.roles, home: t.realm, authRealm: t.realm,
		lookupRealm: t.realm, authType: "token"}, nil
}

// authenticateKey checks an API key, base64(id:api_key).
func (s *Server) authenticateKey(cred string) (*principal, *esError) {
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(cred)
	}
	id, secret, ok := strings.Cut(string(raw), ":")
	if err != nil || !ok {
		return nil, unauthenticated(badCredentials)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok || k.invalidated || k.expired(s.now()) {
		return nil, unauthenticated(badCredentials)
	}
	h := hash(secret)
	if subtle.ConstantTimeCompare(h[:], k.secret[:]) != 1 {
		return nil, unauthenticated(badCredentials)
	}
	return &principal{
		username:    k.owner,
		roles:       k.roles,
		home:        k.realm,
		authRealm:   realm{apiKeyRealm, apiKeyRealm},
		lookupRealm: realm{apiKeyRealm, apiKeyRealm},
		authType:    "api_key",
		key:         k,
		keyID:       k.id,
		keyName:     k.name,
	}, nil
}

// uiamIdentity is the UIAM stand-in's answer to its authenticate endpoint.
type uiamIdentity struct {
	Username string   `json:"username"`
	Roles    []string `json:"roles"`
	Type     string   `json:"type"` // session or api_key
	APIKey   *struct {
		ID          string `json:"id"`
		Description string `json:"description"`
		Internal    bool   `json:"internal"`
	} `json:"api_key"`
}

// authenticateUIAM checks an essu_ credential with UIAM. clientAuth is the
// shared secret the client presented, required for session tokens and
// internal keys.
func (s *Server) authenticateUIAM(
	ctx context.Context, authorization, clientAuth string,
) (*principal, *esError) {
	id, err := s.askUIAM(ctx, authorization)
	if err != nil {
		s.log.Warn("uiam authentication failed", slog.Any("error", err))
		return nil, unauthenticated(badCredentials)
	}
	if id == nil {
		return nil, unauthenticated(badCredentials)
	}
	needsClient := id.Type != "api_key" || id.APIKey != nil && id.APIKey.Internal
	// TODO(deputy): Elasticsearch expects user-created (external) UIAM keys
	// without the shared secret; the stand-in accepts them either way
	// because deputy cannot yet tell its clients which keys are external.
	if needsClient && !s.sharedSecretOK(clientAuth) {
		return nil, unauthenticated("client authentication is required for UIAM credentials")
	}
	p := &principal{
		username:    id.Username,
		roles:       id.Roles,
		home:        realm{uiamRealm, uiamRealm},
		authRealm:   realm{uiamRealm, uiamRealm},
		lookupRealm: realm{uiamRealm, uiamRealm},
		authType:    "token",
	}
	if id.Type == "api_key" && id.APIKey != nil {
		p.authType, p.keyID, p.keyName = "api_key", id.APIKey.ID, id.APIKey.Description
	}
	return p, nil
}

// sharedSecretOK reports whether v is the UIAM shared secret.
func (s *Server) sharedSecretOK(v string) bool {
	return s.uiamKey != "" && subtle.ConstantTimeCompare([]byte(v), []byte(s.uiamKey)) == 1
}

// askUIAM returns who authorization belongs to at UIAM, or nil when UIAM
// rejects it.
func (s *Server) askUIAM(ctx context.Context, authorization string) (*uiamIdentity, error) {
	if s.uiamURL == "" {
		return nil, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		strings.TrimSuffix(s.uiamURL, "/")+uiamAuthenticatePath, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", authorization)
	req.Header.Set(clientAuthHeader, s.uiamKey)
	res, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusNotFound:
		return nil, nil
	case res.StatusCode != http.StatusOK:
		return nil, errors.New("uiam answered " + res.Status)
	}
	var id uiamIdentity
	if err := json.NewDecoder(res.Body).Decode(&id); err != nil || id.Username == "" {
		return nil, errors.New("uiam answered without a username")
	}
	return &id, nil
}

// handleAuthenticate serves GET /_security/_authenticate.
func (s *Server) handleAuthenticate(w http.ResponseWriter, r *http.Request) {
	s.authenticates.Add(1)
	if e := checkParams(r); e != nil {
		e.write(w)
		return
	}
	p, e := s.authenticate(r)
	if e != nil {
		e.write(w)
		return
	}
	writeJSON(w, http.StatusOK, p.info())
}

// info is the body of an authenticate answer.
func (p *principal) info() map[string]any {
	roles := p.roles
	if p.authType == "api_key" {
		roles = nil // Elasticsearch lists no roles for a key
	}
	m := map[string]any{
		"username":             p.username,
		"roles":                append([]string{}, roles...),
		"full_name":            nil,
		"email":                nil,
		"metadata":             map[string]any{},
		"enabled":              true,
		"authentication_realm": p.authRealm,
		"lookup_realm":         p.lookupRealm,
		"authentication_type":  p.authType,
	}
	if p.authType == "api_key" {
		m["api_key"] = map[string]any{"id": p.keyID, "name": p.keyName}
	}
	return m
}

// expired reports whether k has expired at now.
func (k *apiKey) expired(now time.Time) bool {
	return !k.expiration.IsZero() && !now.Before(k.expiration)
}
