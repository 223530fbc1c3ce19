package elasticsearch

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf16"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/deputyhq/deputy"
)

// maxNameLen is the longest API key name Elasticsearch accepts, in UTF-16
// code units.
const maxNameLen = 256

// Metadata that marks the keys deputy grants.
const (
	metadataManaged     = "managed"
	metadataApplication = "application"
	application         = "deputy"
)

// grantRequest is the body of POST /_security/api_key/grant.
type grantRequest struct {
	GrantType            string      `json:"grant_type"`
	Username             string      `json:"username,omitempty"`
	Password             string      `json:"password,omitempty"`
	AccessToken          string      `json:"access_token,omitempty"`
	ClientAuthentication *clientAuth `json:"client_authentication,omitempty"`
	APIKey               grantKey    `json:"api_key"`
}

// clientAuth authenticates the client that presents an access token.
type clientAuth struct {
	Scheme string `json:"scheme"`
	Value  string `json:"value"`
}

// grantKey describes the key to grant. Empty role descriptors give the key
// a snapshot of the user's privileges.
type grantKey struct {
	Name            string         `json:"name"`
	RoleDescriptors struct{}       `json:"role_descriptors"`
	Metadata        map[string]any `json:"metadata"`
}

// grantResponse is the answer to a grant.
type grantResponse struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	APIKey  string `json:"api_key"`
	Encoded string `json:"encoded"`
}

// Grant grants an API key named name (truncated to 256 characters) on
// behalf of caller, or reuses the caller's own Elasticsearch API key. See
// the package documentation for which credentials yield a key.
func (s *Service) Grant(
	ctx context.Context, caller *deputy.Caller, name string,
) (*deputy.GrantedKey, error) {
	if caller == nil {
		return nil, invalid("granting an api key needs the caller's credentials")
	}
	name = truncateName(strings.TrimSpace(name))
	if name == "" {
		return nil, invalid("api key name is required")
	}

	scheme, cred, ok := splitAuthorization(caller.Authorization.Reveal())
	if !ok {
		return nil, invalid("malformed authorization header")
	}
	req := grantRequest{APIKey: grantKey{
		Name:     name,
		Metadata: map[string]any{metadataManaged: true, metadataApplication: application},
	}}
	switch scheme {
	case schemeBasic:
		user, pass, ok := decodePair(cred)
		if !ok {
			return nil, invalid("malformed basic credentials")
		}
		req.GrantType, req.Username, req.Password = "password", user, pass
	case schemeBearer:
		req.GrantType, req.AccessToken = "access_token", cred
		if strings.HasPrefix(cred, uiamPrefix) && s.sharedSecret != "" {
			req.ClientAuthentication = &clientAuth{
				Scheme: "SharedSecret", Value: s.sharedSecret.Reveal(),
			}
		}
	case schemeAPIKey:
		return reuseKey(cred)
	default:
		return nil, invalid("unsupported authorization scheme for granting an api key; " +
			"use Basic, Bearer or ApiKey")
	}
	return s.grant(ctx, &req, cred)
}

// reuseKey returns the caller's own API key, which deputy records but never
// invalidates.
func reuseKey(cred string) (*deputy.GrantedKey, error) {
	if strings.HasPrefix(cred, uiamPrefix) {
		return nil, invalid("cannot schedule a user-scoped task with an organization-level " +
			"API key; use a session token or an Elasticsearch API key")
	}
	id, _, ok := decodePair(cred)
	if !ok {
		return nil, invalid("malformed api key credentials")
	}
	return &deputy.GrantedKey{ID: id, Secret: deputy.Secret(cred), CreatedByUser: true}, nil
}

// grant sends req; cred is the caller's credential, redacted from errors.
func (s *Service) grant(
	ctx context.Context, req *grantRequest, cred string,
) (*deputy.GrantedKey, error) {
	const op = "grant api key"
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%s: encode request: %w", op, err)
	}
	status, resp, err := s.do(ctx, esapi.SecurityGrantAPIKeyRequest{
		Body:    bytes.NewReader(body),
		Refresh: "false",
	})
	if err != nil {
		return nil, unavailable(op, err)
	}
	if status != http.StatusOK {
		return nil, grantError(status, s.statusError(status, resp, cred, req.Password))
	}

	var r grantResponse
	if err := json.Unmarshal(resp, &r); err != nil || r.ID == "" ||
		r.Encoded == "" && r.APIKey == "" {
		return nil, fmt.Errorf("%s: response without id and key", op)
	}
	if r.Encoded == "" {
		r.Encoded = base64.StdEncoding.EncodeToString([]byte(r.ID + ":" + r.APIKey))
	}
	return &deputy.GrantedKey{ID: r.ID, Secret: deputy.Secret(r.Encoded)}, nil
}

// grantError maps a failed grant to a domain error. The detail, which is
// logged but not shown to API users, keeps Elasticsearch's reason.
func grantError(status int, detail error) error {
	const op = "grant api key"
	var code, msg string
	switch {
	case status == http.StatusForbidden:
		code = deputy.EFORBIDDEN
		msg = "deputy's Elasticsearch service user lacks the grant_api_key privilege"
	case status == http.StatusUnauthorized:
		code, msg = deputy.EUNAUTHORIZED, "elasticsearch rejected the credentials"
	case status == http.StatusBadRequest:
		code, msg = deputy.EINVALID, "elasticsearch rejected the api key grant"
	case transient(status):
		return unavailable(op, detail)
	default:
		return fmt.Errorf("%s: %w", op, detail)
	}
	return fmt.Errorf("%s: %w: %w", op, detail, deputy.Errorf(code, "%s", msg))
}

// truncateName shortens name to the 256 UTF-16 code units Elasticsearch
// accepts, without splitting a character.
func truncateName(name string) string {
	n := 0
	for i, r := range name {
		w := 1
		if utf16.RuneLen(r) == 2 {
			w = 2
		}
		if n+w > maxNameLen {
			return strings.TrimSpace(name[:i])
		}
		n += w
	}
	return name
}
