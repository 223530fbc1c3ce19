package main

import (
	"net/http"
	"net/url"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/client"
)

// newAPIClient returns a client of the daemon at server, working in space.
func newAPIClient(server, space string, auth deputy.Secret) (*client.Client, error) {
	if u, err := url.Parse(server); err != nil || (u.Scheme != "http" && u.Scheme != "https") ||
		u.Host == "" {
		return nil, usagef("--server %q is not an http or https URL", server)
	}
	c, err := client.New(client.Config{
		BaseURL:       server,
		Space:         space,
		Authorization: auth,
		UserAgent:     "deputy-cli/" + buildVersion(),
	})
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// statusCode maps an HTTP status to the error code that yields it.
func statusCode(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return deputy.EINVALID
	case http.StatusNotFound:
		return deputy.ENOTFOUND
	case http.StatusConflict:
		return deputy.ECONFLICT
	case http.StatusUnauthorized:
		return deputy.EUNAUTHORIZED
	case http.StatusForbidden:
		return deputy.EFORBIDDEN
	case http.StatusServiceUnavailable:
		return deputy.EUNAVAILABLE
	default:
		return deputy.EINTERNAL
	}
}
