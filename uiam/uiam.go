// Package uiam implements deputy's key service for UIAM, the identity
// service of Elastic Cloud serverless projects, over plain HTTP.
//
// [Service] is the [deputy.KeyService] of kind "uiam". It only yields a key
// for callers that present a UIAM credential (an essu_ string):
//
//   - "Bearer essu_..." (a session token): a key is granted with
//     POST /uiam/api/v1/api-keys/_grant, limited to the project's
//     application roles.
//   - "ApiKey essu_..." (the caller's own key): the key is reused as it is,
//     and deputy never revokes it.
//   - any other credential: no key, and no error.
//
// A UIAM key revokes itself: DELETE /uiam/api/v1/api-keys/{id} is
// authenticated with the key's own secret, so the invalidation queue must
// keep the (encrypted) secret, not just the id. Every call carries the
// shared secret in the x-client-authentication header. Stored secrets are
// the raw essu_ strings.
package uiam

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/deputyhq/deputy"
)

// Kind is the kind of the keys [Service] grants.
const Kind = "uiam"

// Error codes UIAM answers with for a key that is already gone.
const (
	CodeAPIKeyRevoked = "0xD38358"
	CodeAPIKeyMissing = "0x28D520"
)

const (
	prefix           = "essu_"
	clientAuthHeader = "x-client-authentication"
	keysPath         = "/uiam/api/v1/api-keys"
	maxBody          = 1 << 20
	// concurrency bounds the revocations in flight, since UIAM revokes one
	// key per request.
	concurrency = 8
)

// Config configures a [Service].
type Config struct {
	// URL is the base URL of UIAM, such as "https://uiam.example".
	URL string

	// SharedSecret is the secret deputy shares with UIAM, sent with every
	// call. Required.
	SharedSecret deputy.Secret

	// HTTPClient sends the requests. Defaults to http.DefaultClient.
	HTTPClient *http.Client

	// Logger receives debug records about keys found already gone.
	// Defaults to discarding.
	Logger *slog.Logger
}

// Service grants and revokes UIAM API keys. It implements
// [deputy.KeyService] and is safe for concurrent use.
type Service struct {
	base   string
	secret deputy.Secret
	http   *http.Client
	log    *slog.Logger
}

var _ deputy.KeyService = (*Service)(nil)

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	u, err := url.Parse(cfg.URL)
	switch {
	case cfg.URL == "":
		err = errors.New("URL is required")
	case err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		err = errors.New("URL must be an http or https URL with a host")
	case u.User != nil:
		err = errors.New("URL must not carry credentials")
	case cfg.SharedSecret == "":
		err = errors.New("SharedSecret is required")
	}
	if err != nil {
		return nil, fmt.Errorf("uiam: config: %w", err)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{
		base:   strings.TrimSuffix(cfg.URL, "/"),
		secret: cfg.SharedSecret,
		http:   cfg.HTTPClient,
		log:    cfg.Logger,
	}, nil
}

// Kind returns "uiam".
func (s *Service) Kind() string { return Kind }

// Header returns "Authorization: ApiKey <secret>" and, for keys deputy
// granted, the shared secret. A key the user created is external to the
// project: as Kibana does, it is presented without the shared secret.
func (s *Service) Header(secret deputy.Secret, createdByUser bool) http.Header {
	h := http.Header{"Authorization": {"ApiKey " + secret.Reveal()}}
	if !createdByUser {
		h.Set(clientAuthHeader, s.secret.Reveal())
	}
	return h
}

// grantRequest is the body of a grant.
type grantRequest struct {
	Description     string          `json:"description"`
	Internal        bool            `json:"internal"`
	RoleAssignments roleAssignments `json:"role_assignments"`
}

type roleAssignments struct {
	Limit struct {
		Access   []string `json:"access"`
		Resource []string `json:"resource"`
	} `json:"limit"`
}

// Grant grants a key described by name on behalf of a caller with a UIAM
// session token, reuses the caller's own UIAM key, or returns nil for a
// caller without a UIAM credential.
func (s *Service) Grant(
	ctx context.Context, caller *deputy.Caller, name string,
) (*deputy.GrantedKey, error) {
	if caller == nil {
		return nil, nil
	}
	scheme, cred, _ := strings.Cut(strings.TrimSpace(caller.Authorization.Reveal()), " ")
	cred = strings.TrimSpace(cred)
	if !strings.HasPrefix(cred, prefix) {
		return nil, nil
	}
	switch {
	case strings.EqualFold(scheme, "ApiKey"):
		return &deputy.GrantedKey{ID: ownKeyID(caller, cred), Secret: deputy.Secret(cred),
			CreatedByUser: true}, nil
	case !strings.EqualFold(scheme, "Bearer"):
		return nil, nil
	}

	req := grantRequest{Description: name, Internal: true}
	req.RoleAssignments.Limit.Access = []string{"application"}
	req.RoleAssignments.Limit.Resource = []string{"project"}
	body, err := json.Marshal(&req)
	if err != nil {
		return nil, fmt.Errorf("uiam: grant api key: encode request: %w", err)
	}
	status, resp, err := s.do(ctx, http.MethodPost, keysPath+"/_grant", "Bearer "+cred, body)
	if err != nil {
		return nil, unavailable("grant api key", err)
	}
	if status/100 != 2 {
		return nil, grantError(status, s.statusError(status, resp, cred))
	}
	var r struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if err := json.Unmarshal(resp, &r); err != nil || r.ID == "" || r.Key == "" {
		return nil, errors.New("uiam: grant api key: response without id and key")
	}
	return &deputy.GrantedKey{ID: r.ID, Secret: deputy.Secret(r.Key)}, nil
}

// ownKeyID returns the id of the caller's own key: the one the
// authenticator reported, or else a fingerprint of the secret, which names
// the key without revealing it.
func ownKeyID(caller *deputy.Caller, cred string) string {
	if caller.APIKeyID != "" {
		return caller.APIKeyID
	}
	sum := sha256.Sum256([]byte(cred))
	return "sha256:" + hex.EncodeToString(sum[:10])
}

// grantError maps a failed grant to a domain error; detail keeps UIAM's
// answer for the logs.
func grantError(status int, detail error) error {
	const op = "uiam: grant api key"
	var code, msg string
	switch {
	case status == http.StatusUnauthorized:
		code, msg = deputy.EUNAUTHORIZED, "uiam rejected the credentials"
	case status == http.StatusBadRequest:
		code, msg = deputy.EINVALID, "uiam rejected the api key grant"
	case status == http.StatusTooManyRequests || status >= 500:
		return unavailable("grant api key", detail)
	default:
		// A 403 means deputy's shared secret is wrong: not the caller's fault.
		return fmt.Errorf("%s: %w", op, detail)
	}
	return fmt.Errorf("%s: %w: %w", op, detail, deputy.Errorf(code, "%s", msg))
}

// Invalidate revokes keys, each authenticated by its own secret. A key UIAM
// reports as revoked or missing is done.
func (s *Service) Invalidate(ctx context.Context, keys []deputy.InvalidateKey) []error {
	errs := make([]error, len(keys))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, k := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = s.revoke(ctx, k)
		})
	}
	wg.Wait()
	return errs
}

// revoke revokes one key.
func (s *Service) revoke(ctx context.Context, k deputy.InvalidateKey) error {
	switch {
	case k.ID == "":
		return deputy.Errorf(deputy.EINVALID, "api key id is required")
	case k.Secret == "":
		return deputy.Errorf(deputy.EINVALID,
			"uiam api key %s has no secret to authenticate its revocation", k.ID)
	}
	op := "revoke api key " + k.ID
	status, body, err := s.do(ctx, http.MethodDelete, keysPath+"/"+url.PathEscape(k.ID),
		"ApiKey "+k.Secret.Reveal(), nil)
	if err != nil {
		return unavailable(op, err)
	}
	if status/100 == 2 {
		return nil
	}
	code, _ := errorCode(body)
	if code == CodeAPIKeyRevoked || code == CodeAPIKeyMissing || status == http.StatusNotFound {
		s.log.Debug("uiam api key already gone", slog.String("key_id", k.ID),
			slog.String("code", code), slog.Int("status", status))
		return nil
	}
	detail := s.statusError(status, body, k.Secret.Reveal())
	if status == http.StatusTooManyRequests || status >= 500 {
		return unavailable(op, detail)
	}
	return fmt.Errorf("uiam: %s: %w", op, detail)
}

// do sends a request to UIAM with the caller's authorization and the
// shared secret, and returns the response's status and body.
func (s *Service) do(
	ctx context.Context, method, path, authorization string, body []byte,
) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", authorization)
	req.Header.Set(clientAuthHeader, s.secret.Reveal())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := s.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return 0, nil, fmt.Errorf("read response: %w", err)
	}
	return res.StatusCode, b, nil
}

// errorCode returns the code and message of a UIAM error body:
// {"error": {"code": ..., "message": ...}}.
func errorCode(body []byte) (code, message string) {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Code, e.Error.Message
}

// statusError describes a non-2xx answer by its status, code and message,
// with secrets redacted.
func (s *Service) statusError(status int, body []byte, secrets ...string) error {
	code, msg := errorCode(body)
	text := fmt.Sprintf("uiam: status %d", status)
	if code != "" {
		text += " " + code
	}
	if msg != "" {
		text += ": " + msg
	}
	for _, sec := range append(secrets, s.secret.Reveal()) {
		if len(sec) >= 4 {
			text = strings.ReplaceAll(text, sec, "[REDACTED]")
		}
	}
	return errors.New(text)
}

// unavailable wraps a failure to reach UIAM, or an answer that says it is
// temporarily unable to serve.
func unavailable(op string, err error) error {
	return fmt.Errorf("uiam: %s: %w: %w", op, err,
		deputy.Errorf(deputy.EUNAVAILABLE, "uiam is unavailable"))
}
