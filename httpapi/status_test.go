package httpapi_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
)

func TestHealth(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		f.schedule("/api/tasks", `{"id":"a","task_type":"noop"}`)
		w := f.do("GET", "/api/task_manager/_health", "")
		want(t, w, http.StatusOK)
		golden(t, "health", w.Body.Bytes())
	})

	t.Run("ErrStoreDown", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		if err := f.db.Close(); err != nil {
			t.Fatalf("close store: %v", err)
		}
		w := f.do("GET", "/api/task_manager/_health", "")
		want(t, w, http.StatusServiceUnavailable)
		if h := decode[deputy.Health](t, w); h.Status != "error" || h.Reason == "" {
			t.Fatalf("health = %s %q, want error with a reason", h.Status, h.Reason)
		}
	})

	t.Run("ErrUnknownParam", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		wantError(t, f.do("GET", "/api/task_manager/_health?reset=true", ""), http.StatusBadRequest,
			deputy.EINVALID, "reset")
	})
}

func TestPendingKeys(t *testing.T) {
	t.Parallel()
	f := setup(t, options{})
	ctx := t.Context()

	// Queue two keys the way a removal does: recorded, then released while
	// no task uses them.
	secret := []byte("sealed-secret-of-k1")
	keys := []deputy.Key{
		{Kind: "es", ID: "k1", Secret: secret, UserName: "alice", GrantedAt: epoch},
		{Kind: "uiam", ID: "k2", Secret: []byte("sealed-secret-of-k2"), UserName: "alice",
			GrantedAt: epoch},
	}
	if err := f.db.RecordKeys(ctx, keys); err != nil {
		t.Fatalf("record keys: %v", err)
	}
	refs := []deputy.KeyRef{{Kind: "es", ID: "k1"}, {Kind: "uiam", ID: "k2"}}
	if err := f.db.ReleaseKeys(ctx, refs, epoch); err != nil {
		t.Fatalf("release keys: %v", err)
	}
	next := epoch.Add(time.Hour)
	pending, err := f.db.PendingKeys(ctx, deputy.PendingQuery{})
	if err != nil || len(pending) != 2 {
		t.Fatalf("pending keys = %d, %v; want 2", len(pending), err)
	}
	if err := f.db.KeyInvalidationFailed(ctx, pending[1].Seq, "uiam is down", next); err != nil {
		t.Fatalf("record failure: %v", err)
	}

	w := f.do("GET", "/api/api_keys/_pending", "")
	want(t, w, http.StatusOK)
	golden(t, "pending_keys", w.Body.Bytes())
	for _, s := range []string{"sealed-secret", base64.StdEncoding.EncodeToString(secret)} {
		if strings.Contains(w.Body.String(), s) {
			t.Fatalf("response %s holds a secret", w.Body)
		}
	}

	w = f.do("GET", "/api/api_keys/_pending?size=1", "")
	want(t, w, http.StatusOK)
	if got := decode[struct{ Keys []struct{ ID string } }](t, w).Keys; len(got) != 1 || got[0].ID != "k1" {
		t.Fatalf("keys = %+v, want k1 only", got)
	}
	wantError(t, f.do("GET", "/api/api_keys/_pending?size=0", ""), http.StatusBadRequest,
		deputy.EINVALID, "size")
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	f := setup(t, options{realClock: true})
	if err := f.m.Start(t.Context()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := f.m.Stop(t.Context()); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	f.schedule("/api/tasks", `{"id":"a","task_type":"noop"}`)

	// The run is recorded after it returns: poll for it with a deadline.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for f.m.Metrics().Results["noop"]["success"] == 0 {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("the noop task did not run: %+v", f.m.Metrics())
		}
	}

	w := f.do("GET", "/metrics", "")
	want(t, w, http.StatusOK)
	body := w.Body.String()
	for _, line := range []string{
		"deputy_claimed_tasks_total 1",
		"deputy_poll_failures_total 0",
		"deputy_running_tasks 0",
		"deputy_load_ratio 0",
		`deputy_task_runs_total{outcome="success",task_type="noop"} 1`,
		`deputy_task_drift_seconds{quantile="0.5"}`,
		`deputy_task_drift_seconds{quantile="1"}`,
		"deputy_task_drift_samples 1",
		`deputy_claim_duration_seconds{quantile="0.99"}`,
		"# TYPE deputy_task_runs_total counter",
		"# TYPE go_goroutines gauge",
		"process_start_time_seconds",
	} {
		if !strings.Contains(body, line) {
			t.Fatalf("metrics lack %q:\n%s", line, body)
		}
	}
}
