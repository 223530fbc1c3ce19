package esdev

import (
	"net/http"
	"slices"
)

// handleToken serves POST /_security/oauth2/token with grant_type password:
// an access token for the user whose credentials the body carries. The
// caller needs manage_token.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	caller, e := s.authenticate(r)
	if e == nil {
		e = checkParams(r)
	}
	var username, password string
	if e == nil {
		body, err := readBody(r)
		if err != nil {
			e = parseError("token_request", "unreadable body")
		} else {
			username, password, e = parseTokenRequest(body)
		}
	}
	if e == nil && !s.allowed(caller, actionToken.privileges) {
		e = forbidden(caller, actionToken)
	}
	var u *user
	if e == nil {
		var ok bool
		if u, ok = s.checkPassword(username, password); !ok {
			e = unauthenticated("failed to authenticate user [%s]", username)
		}
	}
	if e != nil {
		e.write(w)
		return
	}

	access := randomString(48)
	s.mu.Lock()
	s.tokens[hash(access)] = &token{
		user:    u.name,
		roles:   slices.Clone(u.roles),
		realm:   realm{nativeRealm, nativeType},
		expires: s.now().Add(s.tokenTTL),
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": access,
		"type":         "Bearer",
		"expires_in":   int64(s.tokenTTL.Seconds()),
	})
}

// parseTokenRequest parses and validates a token request body.
func parseTokenRequest(body []byte) (username, password string, e *esError) {
	o, e := parseObject(body, "token_request", false,
		"grant_type", "username", "password", "scope", "refresh_token")
	if e != nil {
		return "", "", e
	}
	var grantType string
	for f, dst := range map[string]*string{"grant_type": &grantType, "username": &username,
		"password": &password} {
		if *dst, e = o.str(f); e != nil {
			return "", "", e
		}
	}
	var problems []string
	switch grantType {
	case "password":
		if username == "" {
			problems = append(problems, "username is missing")
		}
		if password == "" {
			problems = append(problems, "password is missing")
		}
	case "":
		problems = append(problems, "grant_type is missing")
	default:
		problems = append(problems, "grant_type ["+grantType+"] is not supported")
	}
	if len(problems) > 0 {
		return "", "", validation(problems)
	}
	return username, password, nil
}
