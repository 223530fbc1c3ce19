package esdev

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

// keySpec is what a create or grant request asks for.
type keySpec struct {
	name            string
	roleDescriptors json.RawMessage
	metadata        map[string]any
	expiration      time.Duration // zero for no expiration
}

// apiKeyFields are the fields of the key object of create and grant.
var apiKeyFields = []string{"name", "role_descriptors", "expiration", "metadata"}

// parseKeySpec reads the key fields of o and returns them with the
// validation problems Elasticsearch reports for them.
func parseKeySpec(o *object) (*keySpec, []string, *esError) {
	var ks keySpec
	var e *esError
	if ks.name, e = o.str("name"); e != nil {
		return nil, nil, e
	}
	if e = o.decode("metadata", &ks.metadata); e != nil {
		return nil, nil, e
	}
	ks.roleDescriptors = json.RawMessage(`{}`)
	if o.has("role_descriptors") {
		var rd map[string]json.RawMessage
		if e = o.decode("role_descriptors", &rd); e != nil {
			return nil, nil, e
		}
		ks.roleDescriptors = o.fields["role_descriptors"]
	}
	if o.has("expiration") {
		exp, e := o.str("expiration")
		if e != nil {
			return nil, nil, e
		}
		if ks.expiration, e = parseTimeValue("expiration", exp); e != nil {
			return nil, nil, e
		}
	}

	var problems []string
	switch {
	case ks.name == "":
		problems = append(problems, "api key name is required")
	default:
		if len(utf16.Encode([]rune(ks.name))) > 256 {
			problems = append(problems, "api key name may not be more than 256 characters long")
		}
		if ks.name != strings.TrimSpace(ks.name) {
			problems = append(problems, "api key name may not begin or end with whitespace")
		}
		if strings.HasPrefix(ks.name, "_") {
			problems = append(problems, "api key name may not begin with an underscore")
		}
	}
	for k := range ks.metadata {
		if strings.HasPrefix(k, "_") {
			problems = append(problems, "API key metadata keys may not start with [_]")
			break
		}
	}
	return &ks, problems, nil
}

// createKey stores a key for owner and returns the create answer.
func (s *Server) createKey(ks *keySpec, owner *principal) map[string]any {
	now := s.now()
	secret := randomString(16) // 128 bits
	k := &apiKey{
		id:              randomID(),
		name:            ks.name,
		secret:          hash(secret),
		owner:           owner.username,
		realm:           owner.home,
		roles:           slices.Clone(owner.roles),
		roleDescriptors: ks.roleDescriptors,
		metadata:        ks.metadata,
		creation:        now,
	}
	if k.metadata == nil {
		k.metadata = map[string]any{}
	}
	if ks.expiration > 0 {
		k.expiration = now.Add(ks.expiration)
	}
	s.mu.Lock()
	s.keys[k.id] = k
	s.keyOrder = append(s.keyOrder, k)
	s.mu.Unlock()

	resp := map[string]any{
		"id":      k.id,
		"name":    k.name,
		"api_key": secret,
		"encoded": base64.StdEncoding.EncodeToString([]byte(k.id + ":" + secret)),
	}
	if !k.expiration.IsZero() {
		resp["expiration"] = millis(k.expiration)
	}
	return resp
}

// handleCreate serves POST|PUT /_security/api_key: a key for the caller.
func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	p, e := s.authenticate(r)
	if e == nil {
		e = checkParams(r, "refresh")
	}
	body, err := readBody(r)
	if e == nil && err != nil {
		e = parseError("api_key_request", "unreadable body")
	}
	var o *object
	if e == nil {
		o, e = parseObject(body, "api_key_request", false, apiKeyFields...)
	}
	var ks *keySpec
	var problems []string
	if e == nil {
		ks, problems, e = parseKeySpec(o)
	}
	switch {
	case e != nil:
	case len(problems) > 0:
		e = validation(problems)
	case !s.allowed(p, actionCreate.privileges):
		e = forbidden(p, actionCreate)
	}
	if e != nil {
		e.write(w)
		return
	}
	// NB: a key derived from a key has no privileges in Elasticsearch; here
	// it has its owner's, which is enough for what deputy does.
	writeJSON(w, http.StatusOK, s.createKey(ks, p))
}

// grantFields are the fields of a grant request.
var grantFields = []string{"grant_type", "username", "password", "access_token",
	"client_authentication", "run_as", "api_key"}

// grantRequest is a parsed grant request.
type grantRequest struct {
	grantType, username, password, accessToken string
	clientAuth                                 *object
	key                                        *keySpec
}

// parseGrant parses and validates a grant request body.
func parseGrant(body []byte) (*grantRequest, *esError) {
	o, e := parseObject(body, "grant_api_key_request", false, grantFields...)
	if e != nil {
		return nil, e
	}
	var g grantRequest
	for f, dst := range map[string]*string{"grant_type": &g.grantType, "username": &g.username,
		"password": &g.password, "access_token": &g.accessToken} {
		if *dst, e = o.str(f); e != nil {
			return nil, e
		}
	}
	if o.has("run_as") {
		return nil, illegalArgument("[run_as] is not supported by this stand-in")
	}
	if g.clientAuth, e = o.sub("client_authentication", "client_authentication",
		"scheme", "value"); e != nil {
		return nil, e
	}
	ko, e := o.sub("api_key", "api_key_request", apiKeyFields...)
	if e != nil {
		return nil, e
	}
	var problems []string
	if g.key, problems, e = parseKeySpec(ko); e != nil {
		return nil, e
	}
	problems = append(problems, g.problems(o)...)
	if len(problems) > 0 {
		return nil, validation(problems)
	}
	return &g, nil
}

// problems returns what is wrong with the grant's credentials fields.
func (g *grantRequest) problems(o *object) []string {
	var ps []string
	required := func(f string) {
		if !o.has(f) || string(o.fields[f]) == `""` {
			ps = append(ps, "["+f+"] is required for grant_type ["+g.grantType+"]")
		}
	}
	unsupported := func(f string) {
		if o.has(f) {
			ps = append(ps, "["+f+"] is not supported for grant_type ["+g.grantType+"]")
		}
	}
	switch g.grantType {
	case "":
		ps = append(ps, "[grant_type] is required")
	case "password":
		required("username")
		required("password")
		unsupported("access_token")
		unsupported("client_authentication")
	case "access_token":
		required("access_token")
		unsupported("username")
		unsupported("password")
		if o.has("client_authentication") {
			scheme, _ := g.clientAuth.str("scheme")
			value, _ := g.clientAuth.str("value")
			if scheme != "SharedSecret" {
				ps = append(ps, "[client_authentication.scheme] must be [SharedSecret]")
			}
			if value == "" {
				ps = append(ps, "[client_authentication.value] is required")
			}
		}
	default:
		ps = append(ps, "grant_type ["+g.grantType+"] is not supported")
	}
	return ps
}

// handleGrant serves POST /_security/api_key/grant: a key for the user
// whose credentials the request carries.
func (s *Server) handleGrant(w http.ResponseWriter, r *http.Request) {
	caller, e := s.authenticate(r)
	if e == nil {
		e = checkParams(r, "refresh")
	}
	var g *grantRequest
	if e == nil {
		body, err := readBody(r)
		if err != nil {
			e = parseError("grant_api_key_request", "unreadable body")
		} else {
			g, e = parseGrant(body)
		}
	}
	if e == nil && !s.allowed(caller, actionGrant.privileges) {
		e = forbidden(caller, actionGrant)
	}
	var owner *principal
	if e == nil {
		owner, e = s.grantee(r, g)
	}
	if e != nil {
		e.write(w)
		return
	}
	writeJSON(w, http.StatusOK, s.createKey(g.key, owner))
}

// grantee authenticates the user a grant is for.
func (s *Server) grantee(r *http.Request, g *grantRequest) (*principal, *esError) {
	if g.grantType == "password" {
		u, ok := s.checkPassword(g.username, g.password)
		if !ok {
			return nil, unauthenticated("unable to authenticate user [%s] for action [%s]",
				g.username, actionGrant.name)
		}
		return userPrincipal(u.name, u.roles, "realm"), nil
	}
	if strings.HasPrefix(g.accessToken, uiamPrefix) {
		value, _ := g.clientAuth.str("value")
		return s.authenticateUIAM(r.Context(), "Bearer "+g.accessToken, value)
	}
	return s.authenticateToken(g.accessToken)
}

// invalidateRequest selects keys to invalidate.
type invalidateRequest struct {
	ids                   []string
	name, username, realm string
	owner                 bool
}

// parseInvalidate parses and validates an invalidate request body.
func parseInvalidate(body []byte) (*invalidateRequest, *esError) {
	o, e := parseObject(body, "invalidate_api_key_request", false,
		"id", "ids", "name", "realm_name", "username", "owner")
	if e != nil {
		return nil, e
	}
	var q invalidateRequest
	var id string
	for f, dst := range map[string]*string{"id": &id, "name": &q.name,
		"username": &q.username, "realm_name": &q.realm} {
		if *dst, e = o.str(f); e != nil {
			return nil, e
		}
	}
	if e = o.decode("ids", &q.ids); e != nil {
		return nil, e
	}
	if e = o.decode("owner", &q.owner); e != nil {
		return nil, e
	}
	if o.has("id") && o.has("ids") {
		return nil, illegalArgument("Must use either [id] or [ids], not both at the same time")
	}
	if o.has("id") {
		q.ids = []string{id}
	}
	if p := q.problems(o.has("ids") || o.has("id")); len(p) > 0 {
		return nil, validation(p)
	}
	return &q, nil
}

// problems returns what is wrong with an invalidate request; byID is set
// when ids were given.
func (q *invalidateRequest) problems(byID bool) []string {
	var ps []string
	if !byID && q.name == "" && q.username == "" && q.realm == "" && !q.owner {
		ps = append(ps, "One of [api key id, api key name, username, realm name] must be specified")
	}
	if (byID || q.name != "") && (q.username != "" || q.realm != "") {
		ps = append(ps, "username or realm name must not be specified when the api key id(s) "+
			"or api key name are specified")
	}
	if q.owner && (q.username != "" || q.realm != "") {
		ps = append(ps, "neither username nor realm-name may be specified when invalidating "+
			"owned API keys")
	}
	if byID && q.name != "" {
		ps = append(ps, "only one of [api key id(s), api key name] can be specified")
	}
	if byID && len(q.ids) == 0 {
		ps = append(ps, "Field [ids] cannot be an empty array")
	}
	for i, id := range q.ids {
		if strings.TrimSpace(id) == "" {
			ps = append(ps, "Field [ids] must not contain blank id, but got blank id at index "+
				"position: ["+strconv.Itoa(i)+"]")
		}
	}
	return ps
}

// mayManageOwn reports whether p, which lacks the privilege to act on any
// key, may act on the keys sel selects: with manage_own_api_key, when sel
// is restricted to p's own keys or to the key p authenticated with.
func (s *Server) mayManageOwn(p *principal, sel selector) bool {
	if !s.allowed(p, manageOwn) {
		return false
	}
	self := p.keyID != "" && len(sel.ids) == 1 && sel.ids[0] == p.keyID
	return sel.owner || self || sel.username == p.username && sel.realm == p.home.Name
}

// handleInvalidate serves DELETE /_security/api_key.
func (s *Server) handleInvalidate(w http.ResponseWriter, r *http.Request) {
	p, e := s.authenticate(r)
	if e == nil {
		e = checkParams(r)
	}
	var q *invalidateRequest
	if e == nil {
		body, err := readBody(r)
		if err != nil {
			e = parseError("invalidate_api_key_request", "unreadable body")
		} else {
			q, e = parseInvalidate(body)
		}
	}
	var sel selector
	if e == nil {
		sel = selector{ids: q.ids, name: q.name, username: q.username, realm: q.realm,
			owner: q.owner, caller: p}
		if !s.allowed(p, actionInvalidate.privileges) && !s.mayManageOwn(p, sel) {
			e = forbidden(p, actionInvalidate)
		}
	}
	if e != nil {
		e.write(w)
		return
	}
	writeJSON(w, http.StatusOK, s.invalidate(sel))
}

// invalidate invalidates the active keys sel matches. Like Elasticsearch,
// it skips keys already invalidated, so that invalidating a key twice or an
// unknown id answers with empty lists.
func (s *Server) invalidate(sel selector) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	invalidated := []string{}
	var details []map[string]any
	for _, k := range s.keyOrder {
		if k.invalidated || !sel.match(k) {
			continue
		}
		if reason, ok := s.failInvals[k.id]; ok {
			details = append(details, map[string]any{"type": "exception", "reason": reason})
			continue
		}
		k.invalidated, k.invalidation = true, now
		invalidated = append(invalidated, k.id)
	}
	resp := map[string]any{
		"invalidated_api_keys":            invalidated,
		"previously_invalidated_api_keys": []string{},
		"error_count":                     len(details),
	}
	if len(details) > 0 {
		resp["error_details"] = details
	}
	return resp
}

// selector matches keys by the selectors of the get and invalidate APIs.
type selector struct {
	ids                   []string
	name, username, realm string
	owner                 bool
	caller                *principal
	activeOnly            bool
	now                   time.Time
}

// match reports whether k is selected.
func (sel selector) match(k *apiKey) bool {
	switch {
	case len(sel.ids) > 0 && !slices.Contains(sel.ids, k.id),
		sel.name != "" && !matchName(sel.name, k.name),
		sel.username != "" && k.owner != sel.username,
		sel.realm != "" && k.realm.Name != sel.realm,
		sel.owner && (k.owner != sel.caller.username || k.realm != sel.caller.home),
		sel.activeOnly && (k.invalidated || k.expired(sel.now)):
		return false
	}
	return true
}

// matchName matches a key name against a pattern that may end with *.
func matchName(pattern, name string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(name, prefix)
	}
	return pattern == name
}

// handleGetKeys serves GET /_security/api_key.
func (s *Server) handleGetKeys(w http.ResponseWriter, r *http.Request) {
	p, e := s.authenticate(r)
	if e == nil {
		e = checkParams(r, "id", "name", "username", "realm_name", "owner", "active_only",
			"with_limited_by", "with_profile_uid")
	}
	if e != nil {
		e.write(w)
		return
	}
	v := r.URL.Query()
	sel := selector{name: v.Get("name"), username: v.Get("username"), realm: v.Get("realm_name"),
		owner: v.Get("owner") == "true", activeOnly: v.Get("active_only") == "true",
		caller: p, now: s.now()}
	if id := v.Get("id"); id != "" {
		sel.ids = []string{id}
	}
	switch {
	case len(sel.ids) > 0 && sel.name != "":
		e = validation([]string{"only one of [api key id, api key name] can be specified"})
	case sel.owner && (sel.username != "" || sel.realm != ""):
		e = validation([]string{"neither username nor realm-name may be specified when " +
			"retrieving owned API keys"})
	case !s.allowed(p, actionGet.privileges) && !s.mayManageOwn(p, sel):
		e = forbidden(p, actionGet)
	}
	if e != nil {
		e.write(w)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	keys := []map[string]any{}
	for _, k := range s.keyOrder {
		if sel.match(k) {
			keys = append(keys, k.info())
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"api_keys": keys})
}

// info is k as the get and query APIs show it.
func (k *apiKey) info() map[string]any {
	m := map[string]any{
		"id":               k.id,
		"name":             k.name,
		"type":             "rest",
		"creation":         millis(k.creation),
		"invalidated":      k.invalidated,
		"username":         k.owner,
		"realm":            k.realm.Name,
		"realm_type":       k.realm.Type,
		"metadata":         k.metadata,
		"role_descriptors": k.roleDescriptors,
	}
	if !k.expiration.IsZero() {
		m["expiration"] = millis(k.expiration)
	}
	if k.invalidated {
		m["invalidation"] = millis(k.invalidation)
	}
	return m
}
