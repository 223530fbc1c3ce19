package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/deputyhq/deputy"
)

// apiClient calls deputy's HTTP API for the CLI.
//
// TODO(deputy): switch to the client package once it lands; this helper
// only covers what the tasks commands need.
type apiClient struct {
	base string // server URL, with the /s/{space} prefix when a space is set
	auth deputy.Secret
	http *http.Client
}

func newAPIClient(server, space string, auth deputy.Secret) (*apiClient, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("--server %q is not an http or https URL", server)
	}
	base := strings.TrimRight(u.String(), "/")
	if space != "" {
		base += "/s/" + url.PathEscape(space)
	}
	return &apiClient{base: base, auth: auth, http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// do calls method path with a JSON body (nil for none; raw JSON is sent as
// it is) and decodes a JSON response into out (nil to discard it). A
// response with an error status is returned as a [deputy.Error].
func (c *apiClient) do(ctx context.Context, method, path string, q url.Values, body, out any,
) error {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case json.RawMessage:
		r = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		r = bytes.NewReader(enc)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return fmt.Errorf("new request: %w", err)
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth.Reveal())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return deputy.Errorf(deputy.EUNAVAILABLE, "cannot reach deputy at %s: %v", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return deputy.Errorf(deputy.EUNAVAILABLE, "read response: %v", err)
	}
	if resp.StatusCode >= 300 {
		return responseError(resp.StatusCode, b)
	}
	if out == nil || len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// responseError turns an error response into a [deputy.Error].
func responseError(status int, body []byte) error {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return deputy.Errorf(cmp.Or(e.Error.Code, statusCode(status)), "%s", e.Error.Message)
	}
	return deputy.Errorf(statusCode(status), "server answered %d %s", status, http.StatusText(status))
}

// statusCode maps an HTTP status to the error code that yields it.
func statusCode(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return deputy.EINVALID
	case http.StatusNotFound:
		return deputy.ENOTFOUND
	case http.StatusConflict:
		return deputy.ECONFLICT
	case http.StatusUnauthorized:
		return deputy.EUNAUTHORIZED
	case http.StatusForbidden:
		return deputy.EFORBIDDEN
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return deputy.EUNAVAILABLE
	default:
		return deputy.EINTERNAL
	}
}
