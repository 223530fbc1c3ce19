package devserver_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/devserver/devtest"
	"github.com/deputyhq/deputy/devserver/esdev"
	"github.com/deputyhq/deputy/devserver/uiamdev"
	"github.com/deputyhq/deputy/elasticsearch"
	"github.com/deputyhq/deputy/uiam"
)

const sharedSecret = devtest.SharedSecret

// output collects everything the components log.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// world is both stand-ins and deputy's key services for them. Users:
// alice at Elasticsearch, carol at UIAM; deputy is the service user.
type world struct {
	esDev          *esdev.Server
	uiamDev        *uiamdev.Server
	esURL, uiamURL string
	esSvc          *elasticsearch.Service
	uiamSvc        *uiam.Service
	session        string
	out            *output
	logger         *slog.Logger
}

func setup(t *testing.T) *world {
	t.Helper()
	w := &world{out: &output{}}
	w.logger = slog.New(slog.NewJSONHandler(w.out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st := devtest.Start(t, w.logger)
	w.esDev, w.esURL, w.uiamDev, w.uiamURL = st.ES, st.ESURL, st.UIAM, st.UIAMURL
	w.uiamDev.AddUser("carol", "editor")
	w.esDev.AddRole("deputy", "grant_api_key", "manage_api_key")
	w.esDev.AddUser("deputy", "deputy-password", "deputy")
	w.esDev.AddUser("alice", "alice-password", "viewer")

	var err error
	w.esSvc, err = elasticsearch.New(elasticsearch.Config{URL: w.esURL, Username: "deputy",
		Password: "deputy-password", UIAMSharedSecret: sharedSecret, Now: st.Clock.Now,
		Logger: w.logger})
	if err != nil {
		t.Fatalf("elasticsearch.New: %v", err)
	}
	w.uiamSvc, err = uiam.New(uiam.Config{URL: w.uiamURL, SharedSecret: sharedSecret,
		Logger: w.logger})
	if err != nil {
		t.Fatalf("uiam.New: %v", err)
	}
	w.session = w.uiamDev.SessionToken("carol")
	return w
}

// present authenticates at the Elasticsearch stand-in as a run does, with
// the headers a key service gives for a key, and returns the status and
// body.
func (w *world) present(t *testing.T, h http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", w.esURL+"/_security/_authenticate", nil)
	for k, v := range h {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// TestEndToEnd grants an Elasticsearch and a UIAM key from a UIAM session,
// runs with each, invalidates both, and checks that they stop working.
func TestEndToEnd(t *testing.T) {
	t.Parallel()

	w := setup(t)
	ctx := context.Background()
	caller, err := w.esSvc.Authenticate(ctx, deputy.Secret("Bearer "+w.session))
	if err != nil || caller.UserName != "carol" {
		t.Fatalf("Authenticate(carol's session) = %+v, %v", caller, err)
	}

	esKey, err := w.esSvc.Grant(ctx, caller, "deputy: report - carol")
	if err != nil {
		t.Fatalf("elasticsearch Grant: %v", err)
	}
	uiamKey, err := w.uiamSvc.Grant(ctx, caller, "deputy: report - carol")
	if err != nil || uiamKey == nil {
		t.Fatalf("uiam Grant = %+v, %v", uiamKey, err)
	}
	if esKey.CreatedByUser || uiamKey.CreatedByUser {
		t.Fatalf("granted keys marked as created by the user")
	}

	// A run presents each key; both authenticate as carol.
	headers := []http.Header{w.esSvc.Header(esKey.Secret, false), w.uiamSvc.Header(uiamKey.Secret, false)}
	for _, h := range headers {
		status, body := w.present(t, h)
		if status != http.StatusOK || !strings.Contains(body, `"username":"carol"`) ||
			!strings.Contains(body, `"authentication_type":"api_key"`) {
			t.Fatalf("authenticate with a key: %d %s; want carol by api key", status, body)
		}
	}

	// Invalidate both, as the invalidator does.
	for _, tc := range []struct {
		svc deputy.KeyService
		key *deputy.GrantedKey
	}{{w.esSvc, esKey}, {w.uiamSvc, uiamKey}} {
		errs := tc.svc.Invalidate(ctx, []deputy.InvalidateKey{{ID: tc.key.ID,
			Secret: tc.key.Secret}})
		if errs[0] != nil {
			t.Fatalf("%s Invalidate: %v", tc.svc.Kind(), errs[0])
		}
	}
	if k := w.esDev.Keys(); len(k) != 1 || k[0].ID != esKey.ID || !k[0].Invalidated {
		t.Fatalf("Elasticsearch keys %+v; want %s invalidated", k, esKey.ID)
	}
	if k := w.uiamDev.Keys(); len(k) != 1 || k[0].ID != uiamKey.ID || !k[0].Revoked {
		t.Fatalf("UIAM keys %+v; want %s revoked", k, uiamKey.ID)
	}
	for _, h := range headers {
		if status, body := w.present(t, h); status != http.StatusUnauthorized {
			t.Fatalf("authenticate with an invalidated key: %d %s; want 401", status, body)
		}
	}

	// Invalidating again is done, not an error.
	for _, tc := range []struct {
		svc deputy.KeyService
		key *deputy.GrantedKey
	}{{w.esSvc, esKey}, {w.uiamSvc, uiamKey}} {
		errs := tc.svc.Invalidate(ctx, []deputy.InvalidateKey{{ID: tc.key.ID,
			Secret: tc.key.Secret}})
		if errs[0] != nil {
			t.Fatalf("%s Invalidate again: %v", tc.svc.Kind(), errs[0])
		}
	}
}

// TestNoSecretsInOutput runs grant, authenticate and invalidate cycles,
// including failures, and checks that no secret appears in what they log,
// in their errors, or in the stand-ins' error answers.
func TestNoSecretsInOutput(t *testing.T) {
	t.Parallel()

	w := setup(t)
	ctx := context.Background()
	secrets := []string{"deputy-password", "alice-password", "wrong-password", sharedSecret,
		"wrong-shared-secret", w.session}
	var seen []string // errors, answers and values that must not show a secret
	record := func(err error) {
		if err != nil {
			seen = append(seen, err.Error(), fmt.Sprintf("%+v", err), deputy.ErrorMessage(err))
		}
	}
	basic := func(user, pass string) string {
		b := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
		secrets = append(secrets, b)
		return "Basic " + b
	}

	// Grants that succeed, and what they yield.
	alice := &deputy.Caller{Authorization: deputy.Secret(basic("alice", "alice-password"))}
	carol, err := w.esSvc.Authenticate(ctx, deputy.Secret("Bearer "+w.session))
	record(err)
	esKey, err := w.esSvc.Grant(ctx, alice, "deputy: alice")
	record(err)
	esUIAMKey, err := w.esSvc.Grant(ctx, carol, "deputy: carol")
	record(err)
	uiamKey, err := w.uiamSvc.Grant(ctx, carol, "deputy: carol")
	record(err)
	if esKey == nil || esUIAMKey == nil || uiamKey == nil {
		t.Fatalf("grants failed: %v", seen)
	}
	for _, k := range []*deputy.GrantedKey{esKey, esUIAMKey} {
		_, apiKey, _ := strings.Cut(mustDecode(t, k.Secret.Reveal()), ":")
		secrets = append(secrets, k.Secret.Reveal(), apiKey)
	}
	secrets = append(secrets, uiamKey.Secret.Reveal())
	w.logger.Info("granted", slog.Any("caller", carol), slog.Any("es_key", esKey),
		slog.Any("uiam_key", uiamKey))
	seen = append(seen, fmt.Sprintf("%+v %v %#v", *esKey, *uiamKey, *carol))

	// Failures: bad user credentials, bad service credentials, a wrong
	// shared secret, a key revoking with another key's secret.
	_, err = w.esSvc.Grant(ctx, &deputy.Caller{
		Authorization: deputy.Secret(basic("alice", "wrong-password"))}, "n")
	record(err)
	_, err = w.esSvc.Authenticate(ctx, deputy.Secret(basic("alice", "wrong-password")))
	record(err)
	_, err = w.esSvc.Authenticate(ctx, deputy.Secret("ApiKey "+esKey.Secret.Reveal()+"x"))
	record(err)
	badService, _ := elasticsearch.New(elasticsearch.Config{URL: w.esURL, Username: "deputy",
		Password: "wrong-password", Logger: w.logger})
	_, err = badService.Grant(ctx, alice, "n")
	record(err)
	for _, err := range badService.Invalidate(ctx, []deputy.InvalidateKey{{ID: esKey.ID}}) {
		record(err)
	}
	badUIAM, _ := uiam.New(uiam.Config{URL: w.uiamURL, SharedSecret: "wrong-shared-secret",
		Logger: w.logger})
	_, err = badUIAM.Grant(ctx, carol, "n")
	record(err)
	for _, err := range badUIAM.Invalidate(ctx, []deputy.InvalidateKey{{ID: uiamKey.ID,
		Secret: uiamKey.Secret}}) {
		record(err)
	}
	second, err := w.uiamSvc.Grant(ctx, carol, "second")
	record(err)
	for _, err := range w.uiamSvc.Invalidate(ctx, []deputy.InvalidateKey{{ID: second.ID,
		Secret: uiamKey.Secret}}) {
		record(err)
	}
	w.esDev.FailInvalidate(esUIAMKey.ID, "failed to invalidate api key ["+esUIAMKey.ID+"]")
	for _, err := range w.esSvc.Invalidate(ctx, []deputy.InvalidateKey{{ID: esUIAMKey.ID}}) {
		record(err)
	}

	// The stand-ins' error answers to bad credentials.
	for _, h := range []http.Header{
		{"Authorization": {basic("alice", "wrong-password")}},
		{"Authorization": {"ApiKey " + base64.StdEncoding.EncodeToString(
			[]byte(esKey.ID+":wrong-password"))}},
		{"Authorization": {"Bearer " + w.session}},
		{"Authorization": {"ApiKey " + uiamKey.Secret.Reveal()},
			"X-Client-Authentication": {"wrong-shared-secret"}},
	} {
		_, body := w.present(t, h)
		seen = append(seen, body)
	}

	// The cycle completes.
	for _, err := range w.esSvc.Invalidate(ctx, []deputy.InvalidateKey{{ID: esKey.ID}}) {
		record(err)
	}
	for _, err := range w.uiamSvc.Invalidate(ctx, []deputy.InvalidateKey{{ID: uiamKey.ID,
		Secret: uiamKey.Secret}}) {
		record(err)
	}

	all := w.out.String() + "\n" + strings.Join(seen, "\n")
	for _, want := range []string{esKey.ID, uiamKey.ID, "status 401", "status 403",
		`"path":"/_security/api_key/grant"`} {
		if !strings.Contains(all, want) {
			t.Fatalf("output lacks %q: the test would not see a leak\n%s", want, all)
		}
	}
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Fatalf("output contains the secret %q:\n%s", s, all)
		}
	}
	if strings.Contains(all, "essu_") {
		t.Fatalf("output contains an essu_ credential:\n%s", all)
	}
}

// mustDecode decodes standard base64.
func mustDecode(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return string(b)
}
