package builtin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deputyhq/deputy"
)

// HTTPType is the task type of [HTTP].
const HTTPType = "http"

// Defaults of [HTTPConfig].
const (
	DefaultHTTPTimeout = 30 * time.Second
	DefaultUserAgent   = "deputy"
)

// bodyExcerptLen bounds the part of a response body kept in the state, and
// drainLen how much more is read so that the connection can be reused.
const (
	bodyExcerptLen = 256
	drainLen       = 64 << 10
)

// HTTPConfig configures the [HTTP] task type.
type HTTPConfig struct {
	// Client makes the requests. When a task presents credentials, the
	// client is wrapped by [deputy.Request.Client], which adds them only for
	// the Manager's credential hosts. Defaults to a client over
	// [http.DefaultTransport].
	Client *http.Client

	// Timeout bounds one request whose params set no timeout. The run's own
	// timeout applies too. Defaults to 30s.
	Timeout time.Duration

	// UserAgent is sent unless the params set a User-Agent header. Defaults
	// to "deputy".
	UserAgent string

	// Now returns the current time for checked_at. Defaults to time.Now.
	Now func() time.Time
}

// HTTPParams are the params of an [HTTP] task.
type HTTPParams struct {
	// Method is the request method. Defaults to GET.
	Method string `json:"method,omitempty"`
	// URL is the http or https URL to request. Required.
	URL string `json:"url"`
	// Headers are sent with the request. They are stored in the task as
	// given: put no secret here, use PresentCredentials instead.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is sent as the request body.
	Body string `json:"body,omitempty"`
	// ExpectedStatus lists the statuses that count as success; a single
	// number is accepted too. Empty means any 2xx status.
	ExpectedStatus StatusCodes `json:"expected_status,omitempty"`
	// Timeout bounds the request, such as "10s". Defaults to
	// [HTTPConfig.Timeout].
	Timeout string `json:"timeout,omitempty"`
	// PresentCredentials presents the API key of the user who scheduled the
	// task, to the Manager's credential hosts only. A task scheduled without
	// credentials then fails.
	PresentCredentials bool `json:"present_credentials,omitempty"`
}

// HTTPState is the state a successful run of an [HTTP] task stores.
type HTTPState struct {
	// Status is the response status.
	Status int `json:"status"`
	// DurationMS is how long the request took, in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// CheckedAt is when the request was made.
	CheckedAt time.Time `json:"checked_at"`
	// OK reports that the status was expected. A run with an unexpected
	// status fails and keeps the previous state, so a stored state always
	// has OK set; it is there for readers that check one field.
	OK bool `json:"ok"`
	// Runs counts the successful runs of the task.
	Runs int64 `json:"runs"`
	// BodyExcerpt holds the first 256 bytes of the response body, as valid
	// UTF-8. It is left out for requests that presented credentials, whose
	// responses may carry the user's data. Headers are never stored.
	BodyExcerpt string `json:"body_excerpt,omitempty"`
}

// StatusCodes is a list of HTTP statuses that reads a single number too.
type StatusCodes []int

// UnmarshalJSON reads a number or a list of numbers.
func (s *StatusCodes) UnmarshalJSON(b []byte) error {
	var one int
	if err := json.Unmarshal(b, &one); err == nil {
		*s = StatusCodes{one}
		return nil
	}
	var many []int
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("expected_status must be a status code or a list of status codes")
	}
	*s = many
	return nil
}

// match reports whether code is one of s, or a 2xx status when s is empty.
func (s StatusCodes) match(code int) bool {
	if len(s) == 0 {
		return code >= 200 && code <= 299
	}
	return slices.Contains(s, code)
}

func (s StatusCodes) String() string {
	if len(s) == 0 {
		return "2xx"
	}
	parts := make([]string, len(s))
	for i, c := range s {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, " or ")
}

var methods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions,
}

var headerNameRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// ParseHTTPParams decodes and validates the params of an [HTTP] task,
// filling in the default method.
func ParseHTTPParams(raw json.RawMessage) (*HTTPParams, error) {
	var p HTTPParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	p.Method = strings.ToUpper(cmp.Or(p.Method, http.MethodGet))
	if !slices.Contains(methods, p.Method) {
		return nil, fmt.Errorf("method %q must be one of %s", p.Method, strings.Join(methods, ", "))
	}
	if err := checkURL(p.URL); err != nil {
		return nil, err
	}
	for name, v := range p.Headers {
		if !headerNameRE.MatchString(name) {
			return nil, fmt.Errorf("headers: %q is not a valid header name", name)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("headers: the value of %s contains a line break or NUL", name)
		}
		if p.PresentCredentials && strings.EqualFold(name, "Authorization") {
			return nil, errors.New("headers: Authorization cannot be set with present_credentials")
		}
	}
	for _, c := range p.ExpectedStatus {
		if c < 100 || c > 599 {
			return nil, fmt.Errorf("expected_status %d is not an HTTP status", c)
		}
	}
	if p.Timeout != "" {
		if _, err := deputy.ParseDuration(p.Timeout); err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
	}
	return &p, nil
}

func checkURL(raw string) error {
	if raw == "" {
		return errors.New("url is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url %q is not a valid URL", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url %q must use http or https", u.Redacted())
	}
	if u.Host == "" {
		return fmt.Errorf("url %q has no host", u.Redacted())
	}
	return nil
}

// HTTP returns the definition of the "http" task type: one HTTP request per
// run, described by [HTTPParams], whose outcome is stored as [HTTPState].
// A network error or an unexpected status fails the run, so that it retries
// by the usual rules: a one-off task after a backoff, a recurring one at its
// next occurrence.
func HTTP(cfg HTTPConfig) deputy.Definition {
	h := &httpTask{cfg: cfg}
	h.cfg.Timeout = cmp.Or(h.cfg.Timeout, DefaultHTTPTimeout)
	h.cfg.UserAgent = cmp.Or(h.cfg.UserAgent, DefaultUserAgent)
	if h.cfg.Client == nil {
		h.cfg.Client = &http.Client{}
	}
	if h.cfg.Now == nil {
		h.cfg.Now = time.Now
	}
	return deputy.Definition{
		Type:        HTTPType,
		Title:       "HTTP request",
		Description: "Makes one HTTP request and records its status and duration.",
		ValidateParams: func(raw json.RawMessage) error {
			_, err := ParseHTTPParams(raw)
			return err
		},
		Run: h.run,
	}
}

type httpTask struct {
	cfg HTTPConfig
}

func (h *httpTask) run(ctx context.Context, r *deputy.Run) (deputy.Result, error) {
	p, err := ParseHTTPParams(r.Task.Params)
	if err != nil {
		// Params are validated when stored, so this task can never succeed.
		return deputy.Result{}, deputy.Unrecoverable(fmt.Errorf("http task: %w", err))
	}
	client := h.cfg.Client
	if p.PresentCredentials {
		if r.Request == nil {
			return deputy.Result{}, errors.New(
				"http task: present_credentials is set but the task was scheduled without credentials")
		}
		client = r.Request.Client(client)
	}
	timeout := h.cfg.Timeout
	if p.Timeout != "" {
		timeout, _ = deputy.ParseDuration(p.Timeout) // validated above
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := h.newRequest(ctx, p)
	if err != nil {
		return deputy.Result{}, deputy.Unrecoverable(err)
	}
	start := h.cfg.Now()
	resp, err := client.Do(req)
	if err != nil {
		return deputy.Result{}, fmt.Errorf("http task: %w", err)
	}
	excerpt := readExcerpt(resp.Body)
	took := h.cfg.Now().Sub(start)
	if !p.ExpectedStatus.match(resp.StatusCode) {
		return deputy.Result{}, fmt.Errorf("http task: %s %s: unexpected status %d, want %s",
			p.Method, redactURL(p.URL), resp.StatusCode, p.ExpectedStatus)
	}

	st := HTTPState{
		Status:     resp.StatusCode,
		DurationMS: took.Milliseconds(),
		CheckedAt:  start.UTC(),
		OK:         true,
		Runs:       previousRuns(r.Task.State) + 1,
	}
	if !p.PresentCredentials {
		st.BodyExcerpt = excerpt
	}
	state, err := json.Marshal(st)
	if err != nil {
		return deputy.Result{}, fmt.Errorf("http task: encode state: %w", err)
	}
	logger(r).Debug("http task done",
		slog.Int("status", st.Status),
		slog.Int64("duration_ms", st.DurationMS))
	return deputy.Result{State: state}, nil
}

func (h *httpTask) newRequest(ctx context.Context, p *HTTPParams) (*http.Request, error) {
	var body io.Reader
	if p.Body != "" {
		body = strings.NewReader(p.Body)
	}
	req, err := http.NewRequestWithContext(ctx, p.Method, p.URL, body)
	if err != nil {
		return nil, fmt.Errorf("http task: new request: %w", err)
	}
	req.Header.Set("User-Agent", h.cfg.UserAgent)
	for name, v := range p.Headers {
		if strings.EqualFold(name, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(name, v)
	}
	return req, nil
}

// readExcerpt returns the first bytes of body as valid UTF-8, reads a bounded
// rest so that the connection can be reused, and closes body.
func readExcerpt(body io.ReadCloser) string {
	defer body.Close()
	b, _ := io.ReadAll(io.LimitReader(body, bodyExcerptLen))
	_, _ = io.Copy(io.Discard, io.LimitReader(body, drainLen))
	if len(b) == bodyExcerptLen {
		// Drop a rune the limit split in two rather than mangling it.
		for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
			if utf8.RuneStart(b[len(b)-i]) {
				if !utf8.FullRune(b[len(b)-i:]) {
					b = b[:len(b)-i]
				}
				break
			}
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// previousRuns reads the run count of a previous state; a state of another
// shape counts as none.
func previousRuns(state json.RawMessage) int64 {
	var prev struct {
		Runs int64 `json:"runs"`
	}
	if len(state) == 0 || json.Unmarshal(state, &prev) != nil {
		return 0
	}
	return max(prev.Runs, 0)
}

// redactURL hides the password of a URL for error messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	return u.Redacted()
}
