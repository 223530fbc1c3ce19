package deputy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
)

// Secret is a credential held in memory. Its String, Format, JSON and slog
// forms are redacted so that it cannot leak through logs or responses; use
// [Secret.Reveal] where the credential must be sent.
type Secret string

const redacted = "[REDACTED]"

// Reveal returns the credential.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer with a redacted value.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer with a redacted value.
func (s Secret) GoString() string { return redacted }

// Format implements fmt.Formatter with a redacted value for every verb.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON writes a redacted value.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText writes a redacted value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue implements slog.LogValuer with a redacted value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// Caller is the user on whose behalf tasks are scheduled: the credential
// they presented and who it authenticated as.
type Caller struct {
	// Authorization is the caller's Authorization header, such as
	// "Basic ...", "Bearer ..." or "ApiKey ...".
	Authorization Secret
	// SpaceID is the space the caller works in. Empty means the default.
	SpaceID string
	// UserName is who the credential authenticated as.
	UserName string
	// Roles are the caller's roles.
	Roles []string
	// AuthenticationType is how the credential authenticated, such as
	// "realm", "token" or "api_key".
	AuthenticationType string
	// APIKeyID is the id of the API key the caller authenticated with, if
	// any.
	APIKeyID string
}

// GrantedKey is an API key a [KeyService] granted or reused for a caller.
type GrantedKey struct {
	// ID is the key's id at its service.
	ID string
	// Secret is the credential in the form the service expects after the
	// ApiKey scheme: base64(id:api_key) for Elasticsearch and the raw
	// essu_ secret for UIAM.
	Secret Secret
	// CreatedByUser marks the caller's own key, reused; deputy never
	// invalidates it.
	CreatedByUser bool
}

// KeyService grants and invalidates API keys of one kind. The
// elasticsearch and uiam packages implement it; adding a kind of key means
// adding an implementation.
type KeyService interface {
	// Kind names the keys, such as "es" or "uiam". It is stored with every
	// key.
	Kind() string

	// Grant grants a key named name on behalf of caller, or reuses the
	// caller's own key. It returns nil and no error when the caller's
	// credential cannot yield a key of this kind; the task then runs
	// without one. An invalid credential is an EINVALID or EUNAUTHORIZED
	// error.
	Grant(ctx context.Context, caller *Caller, name string) (*GrantedKey, error)

	// Invalidate invalidates keys. It returns one error per key, nil for a
	// key that is now invalid, including one the service reports as already
	// invalidated or unknown.
	Invalidate(ctx context.Context, keys []InvalidateKey) []error

	// Header returns the headers a run presents to authenticate with a key
	// of this kind. createdByUser tells a key the caller brought from one
	// deputy granted, for services that treat them differently.
	Header(secret Secret, createdByUser bool) http.Header
}

// InvalidateKey is one key to invalidate: its id and, for services where a
// key revokes itself, its secret.
type InvalidateKey struct {
	ID     string
	Secret Secret
}

// Authenticator authenticates the callers of deputy's own API.
type Authenticator interface {
	// Authenticate returns who the Authorization header authenticates as,
	// or an EUNAUTHORIZED error.
	Authenticate(ctx context.Context, authorization Secret) (*Caller, error)
}
