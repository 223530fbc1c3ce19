package elasticsearch

import (
	"encoding/base64"
	"strings"

	"github.com/deputyhq/deputy"
)

// uiamPrefix starts every UIAM credential.
const uiamPrefix = "essu_"

// Authorization schemes, as they are written canonically.
const (
	schemeBasic  = "Basic"
	schemeBearer = "Bearer"
	schemeAPIKey = "ApiKey"
)

// splitAuthorization splits an Authorization header into its scheme,
// canonicalized when it is one of Basic, Bearer and ApiKey (schemes are
// case-insensitive), and its credentials. It reports false when either
// part is missing.
func splitAuthorization(h string) (scheme, cred string, ok bool) {
	scheme, cred, ok = strings.Cut(strings.TrimSpace(h), " ")
	cred = strings.TrimSpace(cred)
	if !ok || scheme == "" || cred == "" {
		return "", "", false
	}
	for _, s := range []string{schemeBasic, schemeBearer, schemeAPIKey} {
		if strings.EqualFold(scheme, s) {
			return s, cred, true
		}
	}
	return scheme, cred, true
}

// decodePair decodes base64(a:b), as used by Basic credentials and API
// keys, with or without padding. It reports false unless both parts are
// present.
func decodePair(s string) (a, b string, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if raw, err = base64.RawStdEncoding.DecodeString(s); err != nil {
			return "", "", false
		}
	}
	a, b, ok = strings.Cut(string(raw), ":")
	return a, b, ok && a != "" && b != ""
}

// invalid returns an EINVALID error.
func invalid(format string, args ...any) error {
	return deputy.Errorf(deputy.EINVALID, format, args...)
}
