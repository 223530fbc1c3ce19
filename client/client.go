// Package client calls deputy's HTTP API, as served by the httpapi package.
//
// Every method returns a [*Error] when the server answers with an error
// status, and an error with code [deputy.EUNAVAILABLE] when it cannot be
// reached; [deputy.ErrorCode] and [deputy.ErrorMessage] see through both, so
// callers such as the CLI can map any error to an exit code.
package client

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

// DefaultTimeout bounds a call when [Config.HTTPClient] is nil.
const DefaultTimeout = time.Minute

// maxResponse bounds how much of a response is read.
const maxResponse = 64 << 20

// Config configures a [Client].
type Config struct {
	// BaseURL is the server's URL, such as "http://127.0.0.1:7420". It may
	// carry a path prefix; it must not carry credentials. Required.
	BaseURL string

	// Space is the space calls work in. Empty means the default space.
	Space string

	// Authorization is sent as the Authorization header of every call,
	// such as "Basic ..." or "ApiKey ...". Empty sends none.
	Authorization deputy.Secret

	// HTTPClient sends the requests. Defaults to a client whose calls time
	// out after [DefaultTimeout].
	HTTPClient *http.Client

	// UserAgent is sent as the User-Agent header. Defaults to
	// "deputy-client".
	UserAgent string
}

// Client calls one deputy server. It is safe for concurrent use.
type Client struct {
	base string // BaseURL and the /s/{space} prefix, without a final slash
	auth deputy.Secret
	http *http.Client
	ua   string
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, fmt.Errorf("client: base url %q must be an http or https URL with a host",
			cfg.BaseURL)
	case u.User != nil:
		return nil, errors.New("client: base url must not carry credentials; set Authorization")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("client: base url must not have a query or a fragment")
	}
	base := strings.TrimRight(u.String(), "/")
	if cfg.Space != "" {
		base += "/s/" + url.PathEscape(cfg.Space)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	return &Client{
		base: base,
		auth: cfg.Authorization,
		http: hc,
		ua:   cmp.Or(cfg.UserAgent, "deputy-client"),
	}, nil
}

// Error is an error answer of the server: its HTTP status and the error it
// reported.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Err is the reported error. Its code is derived from Status when the
	// answer carried none.
	Err *deputy.Error
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("deputy api: %s: %s (status %d)", e.Err.Code, e.Err.Message, e.Status)
}

// Unwrap returns the reported error.
func (e *Error) Unwrap() error { return e.Err }

// Do calls method on path (relative to the base URL and space, such as
// "/api/tasks") with the query q and a JSON body, and decodes the JSON
// answer into out. A body of type [json.RawMessage] is sent as it is; nil
// sends none. An out of type *[json.RawMessage] receives the raw answer;
// nil discards it. The typed methods are built on Do; it serves routes they
// do not cover.
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	status, b, err := c.call(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	if status < 200 || status > 299 {
		return responseError(status, b)
	}
	return decode(method, path, b, out)
}

// call sends a request and returns the status and body of the answer,
// whatever the status.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, body any,
) (int, []byte, error) {
	resp, err := c.send(ctx, method, path, q, body)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return 0, nil, unavailable(fmt.Errorf("%s %s: read response: %w", method, path, err))
	}
	return resp.StatusCode, b, nil
}

// send sends a request and returns the response whatever its status.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body any,
) (*http.Response, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case json.RawMessage:
		r = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		r = bytes.NewReader(enc)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: new request: %w", method, path, err)
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth.Reveal())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// NB: url.Error names the URL, which carries no credential: New
		// rejects URLs with user info.
		return nil, unavailable(fmt.Errorf("%s %s: %w", method, path, err))
	}
	return resp, nil
}

// unavailable marks err as a failure to reach the server, keeping err in
// the chain for errors.Is, such as context.Canceled.
func unavailable(err error) error {
	return fmt.Errorf("%w: %w", deputy.Errorf(deputy.EUNAVAILABLE, "cannot reach deputy"), err)
}

// decode decodes an answer into out.
func decode(method, path string, b []byte, out any) error {
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], b...)
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// responseError returns the [*Error] of an error answer. An answer without
// a JSON error, such as a proxy's, gets the code of its status.
func responseError(status int, body []byte) error {
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != nil && e.Error.Message != "" {
		return &Error{Status: status, Err: &deputy.Error{
			Code: cmp.Or(e.Error.Code, codeOf(status)), Message: e.Error.Message,
		}}
	}
	return &Error{Status: status, Err: deputy.Errorf(codeOf(status),
		"server answered %d %s", status, http.StatusText(status))}
}

// codeOf returns the error code an HTTP status stands for.
func codeOf(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusMethodNotAllowed,
		http.StatusUnprocessableEntity:
		return deputy.EINVALID
	case http.StatusUnauthorized:
		return deputy.EUNAUTHORIZED
	case http.StatusForbidden:
		return deputy.EFORBIDDEN
	case http.StatusNotFound:
		return deputy.ENOTFOUND
	case http.StatusConflict:
		return deputy.ECONFLICT
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout:
		return deputy.EUNAVAILABLE
	default:
		return deputy.EINTERNAL
	}
}
