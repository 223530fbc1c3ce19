package builtin_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/builtin"
)

// runTask runs def on a task with the given params and state.
func runTask(t *testing.T, def deputy.Definition, params, state string, req *deputy.Request,
) (deputy.Result, error) {
	t.Helper()
	task := &deputy.Task{ID: "t1", Type: def.Type, Params: json.RawMessage(params), Attempts: 1}
	if state != "" {
		task.State = json.RawMessage(state)
	}
	return def.Run(context.Background(), &deputy.Run{Task: task, Request: req})
}

func mustParams(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal params: %v", err)
	}
	return string(b)
}

func decodeState(t *testing.T, res deputy.Result) builtin.HTTPState {
	t.Helper()
	var st builtin.HTTPState
	if err := json.Unmarshal(res.State, &st); err != nil {
		t.Fatalf("decode state %s: %v", res.State, err)
	}
	return st
}

func TestHTTP_Run(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		var got *http.Request
		var gotBody string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got, gotBody = r, string(b)
			w.Header().Set("X-Secret", "do-not-store")
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, strings.Repeat("é", 200))
		}))
		defer srv.Close()

		now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		def := builtin.HTTP(builtin.HTTPConfig{Now: func() time.Time { return now }})
		params := mustParams(t, map[string]any{
			"method": "post", "url": srv.URL + "/hook", "headers": map[string]string{"X-Test": "1"},
			"body": "hello",
		})
		res, err := runTask(t, def, params, `{"runs":41,"status":500}`, nil)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		st := decodeState(t, res)
		if st.Status != http.StatusAccepted || !st.OK || st.Runs != 42 || !st.CheckedAt.Equal(now) {
			t.Fatalf("state = %+v", st)
		}
		if got.Method != http.MethodPost || got.URL.Path != "/hook" || got.Header.Get("X-Test") != "1" ||
			gotBody != "hello" || got.Header.Get("User-Agent") != builtin.DefaultUserAgent {
			t.Fatalf("request = %s %s %v body %q", got.Method, got.URL, got.Header, gotBody)
		}
		if len(st.BodyExcerpt) > 256 || !strings.HasPrefix(st.BodyExcerpt, "éé") ||
			strings.ContainsRune(st.BodyExcerpt, '\uFFFD') {
			t.Fatalf("body_excerpt = %q (%d bytes)", st.BodyExcerpt, len(st.BodyExcerpt))
		}
		if strings.Contains(string(res.State), "do-not-store") {
			t.Fatalf("state stores a response header: %s", res.State)
		}
	})

	t.Run("ExpectedStatusList", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
		}))
		defer srv.Close()
		params := mustParams(t, map[string]any{"url": srv.URL, "expected_status": []int{404, 410}})
		res, err := runTask(t, builtin.HTTP(builtin.HTTPConfig{}), params, "", nil)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		if st := decodeState(t, res); st.Status != 404 || st.Runs != 1 {
			t.Fatalf("state = %+v", st)
		}
	})

	t.Run("ErrUnexpectedStatus", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		defer srv.Close()
		params := mustParams(t, map[string]any{"url": srv.URL})
		_, err := runTask(t, builtin.HTTP(builtin.HTTPConfig{}), params, "", nil)
		if err == nil || !strings.Contains(err.Error(), "unexpected status 503, want 2xx") {
			t.Fatalf("err = %v, want unexpected status", err)
		}
		if deputy.ErrorCode(err) != deputy.EINTERNAL {
			t.Fatalf("err = %v: a status error must retry, not be a domain error", err)
		}
		var unrecoverable *deputy.UnrecoverableError
		if errorsAs(err, &unrecoverable) {
			t.Fatalf("err = %v is unrecoverable, want retryable", err)
		}
	})

	t.Run("ErrNetwork", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there any more
		params := mustParams(t, map[string]any{"url": "http://" + addr + "/", "timeout": "2s"})
		_, err = runTask(t, builtin.HTTP(builtin.HTTPConfig{}), params, "", nil)
		if err == nil || !strings.Contains(err.Error(), "connect") {
			t.Fatalf("err = %v, want a connection error", err)
		}
	})

	t.Run("ErrTimeout", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		defer close(release)
		params := mustParams(t, map[string]any{"url": srv.URL, "timeout": "50ms"})
		_, err := runTask(t, builtin.HTTP(builtin.HTTPConfig{}), params, "", nil)
		if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
			t.Fatalf("err = %v, want a deadline error", err)
		}
	})
}

func TestHTTP_Credentials(t *testing.T) {
	t.Parallel()

	seen := make(chan string, 2)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Host + " " + r.Header.Get("Authorization")
	})
	allowed := httptest.NewServer(handler)
	defer allowed.Close()
	other := httptest.NewServer(handler)
	defer other.Close()

	allowedHost := mustHost(t, allowed.URL)
	h := http.Header{"Authorization": {"ApiKey c2VjcmV0"}}
	req := deputy.NewRequest("default", "es", "key-1", "elastic", h, func(host string) bool {
		return host == allowedHost
	})
	def := builtin.HTTP(builtin.HTTPConfig{})

	t.Run("OK_AllowedHost", func(t *testing.T) {
		params := mustParams(t, map[string]any{"url": allowed.URL, "present_credentials": true})
		res, err := runTask(t, def, params, "", req)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		if got := <-seen; got != allowedHost+" ApiKey c2VjcmV0" {
			t.Fatalf("allowed host saw %q", got)
		}
		if st := decodeState(t, res); st.BodyExcerpt != "" {
			t.Fatalf("a credentialed response was stored: %+v", st)
		}
	})

	t.Run("OK_OtherHostGetsNothing", func(t *testing.T) {
		params := mustParams(t, map[string]any{"url": other.URL, "present_credentials": true})
		if _, err := runTask(t, def, params, "", req); err != nil {
			t.Fatalf("run: %v", err)
		}
		if got := <-seen; got != mustHost(t, other.URL)+" " {
			t.Fatalf("other host saw %q, want no Authorization", got)
		}
	})

	t.Run("OK_NotAskedGetsNothing", func(t *testing.T) {
		params := mustParams(t, map[string]any{"url": allowed.URL})
		if _, err := runTask(t, def, params, "", req); err != nil {
			t.Fatalf("run: %v", err)
		}
		if got := <-seen; got != allowedHost+" " {
			t.Fatalf("host saw %q without present_credentials", got)
		}
	})

	t.Run("ErrNoCredentials", func(t *testing.T) {
		params := mustParams(t, map[string]any{"url": allowed.URL, "present_credentials": true})
		_, err := runTask(t, def, params, "", nil)
		if err == nil || !strings.Contains(err.Error(), "without credentials") {
			t.Fatalf("err = %v, want a missing credentials error", err)
		}
	})
}

func TestHTTP_ValidateParams(t *testing.T) {
	t.Parallel()

	validate := builtin.HTTP(builtin.HTTPConfig{}).ValidateParams
	tests := []struct {
		name, params, wantErr string
	}{
		{"OK", `{"url":"https://example.com/x"}`, ""},
		{"OK_Full", `{"method":"put","url":"http://h:9200","headers":{"X-A":"b"},"body":"x",` +
			`"expected_status":201,"timeout":"10s","present_credentials":true}`, ""},
		{"OK_StatusList", `{"url":"http://h","expected_status":[200,204]}`, ""},
		{"ErrNoURL", `{}`, "url is required"},
		{"ErrScheme", `{"url":"ftp://h/x"}`, "must use http or https"},
		{"ErrNoHost", `{"url":"http:///x"}`, "has no host"},
		{"ErrBadURL", `{"url":"http://h/%zz"}`, "not a valid URL"},
		{"ErrMethod", `{"url":"http://h","method":"TRACE"}`, "method \"TRACE\" must be one of"},
		{"ErrMethodToken", `{"url":"http://h","method":"GE T"}`, "must be one of"},
		{"ErrHeaderName", `{"url":"http://h","headers":{"X A":"b"}}`, "not a valid header name"},
		{"ErrHeaderValue", `{"url":"http://h","headers":{"X-A":"b\r\nY: z"}}`, "line break"},
		{"ErrAuthorizationWithCredentials",
			`{"url":"http://h","headers":{"authorization":"x"},"present_credentials":true}`,
			"Authorization cannot be set"},
		{"ErrStatus", `{"url":"http://h","expected_status":99}`, "not an HTTP status"},
		{"ErrStatusType", `{"url":"http://h","expected_status":"ok"}`, "expected_status must be"},
		{"ErrTimeout", `{"url":"http://h","timeout":"soon"}`, "timeout: invalid duration"},
		{"ErrUnknownParam", `{"url":"http://h","methd":"GET"}`, `unknown param "methd"`},
		{"ErrType", `{"url":42}`, "url must be a string"},
		{"ErrTrailing", `{"url":"http://h"} {}`, "unexpected data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := validate(json.RawMessage(tt.params))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("validate %s: %v", tt.params, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("validate %s = %v, want error containing %q", tt.params, err, tt.wantErr)
			}
		})
	}
}

func mustHost(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse %s: %v", raw, err)
	}
	return u.Host
}
