package deputy_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/devserver/esdev"
	"github.com/deputyhq/deputy/devserver/uiamdev"
	"github.com/deputyhq/deputy/elasticsearch"
	"github.com/deputyhq/deputy/internal/keyring"
	"github.com/deputyhq/deputy/uiam"
)

// bulkTasks returns n new tasks of type typ with ids prefixed by prefix.
func bulkTasks(prefix, typ string, n int) []deputy.NewTask {
	nts := make([]deputy.NewTask, n)
	for i := range nts {
		nts[i] = deputy.NewTask{ID: fmt.Sprintf("%s-%05d", prefix, i), Type: typ}
	}
	return nts
}

// grants returns how many keys the stand-ins have granted.
func (w *keyWorld) grants() int { return len(w.esdev.Keys()) + len(w.uiamdev.Keys()) }

// TestManager_BulkScheduleKeys schedules 1,000 tasks of one type with a
// user's UIAM session: two keys are granted, one of each kind, and every
// task holds both.
func TestManager_BulkScheduleKeys(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, "uiam")
	caller := w.sessionCaller(t)
	before := w.grants()

	res, err := w.m.BulkSchedule(t.Context(), bulkTasks("bulk", "whoami", 1000),
		&deputy.Options{Caller: caller})
	if err != nil || len(res.Errors) > 0 || len(res.Tasks) != 1000 {
		t.Fatalf("BulkSchedule = %d tasks, %v, %v; want 1000", len(res.Tasks), res.Errors, err)
	}
	if n := w.grants() - before; n != 2 {
		t.Fatalf("BulkSchedule of 1000 tasks granted %d keys, want 2 (one es, one uiam)", n)
	}
	for _, id := range []string{"bulk-00000", "bulk-00999"} {
		task := w.task(t, id)
		if task == nil || len(task.Keys) != 2 || task.UserScope == nil ||
			task.UserScope.KeyIDs["es"] == "" || task.UserScope.KeyIDs["uiam"] == "" {
			t.Fatalf("task %s = %+v, want both kinds of key", id, task)
		}
	}
	w.checkLogs(t)
}

// keyNode is a manager that schedules with keys granted by the local
// stand-ins of Elasticsearch and UIAM, on SQLite.
type keyNode struct {
	m       *deputy.Manager
	esdev   *esdev.Server
	uiamdev *uiamdev.Server
	caller  *deputy.Caller
}

func newKeyNode(tb testing.TB) *keyNode {
	tb.Helper()
	n := &keyNode{uiamdev: uiamdev.New(uiamdev.Config{SharedSecret: sharedSecret})}
	uiamSrv := httptest.NewServer(n.uiamdev)
	tb.Cleanup(uiamSrv.Close)
	n.esdev = esdev.New(esdev.Config{UIAMURL: uiamSrv.URL, UIAMSharedSecret: sharedSecret})
	esSrv := httptest.NewServer(n.esdev)
	tb.Cleanup(esSrv.Close)
	n.esdev.AddRole("deputy_service", "grant_api_key", "manage_api_key")
	n.esdev.AddUser("deputy", "deputy-service-pw", "deputy_service")
	n.uiamdev.AddUser("bob", "viewer")

	es, err := elasticsearch.New(elasticsearch.Config{URL: esSrv.URL, Username: "deputy",
		Password: "deputy-service-pw", UIAMSharedSecret: sharedSecret, CacheTTL: -1})
	if err != nil {
		tb.Fatal(err)
	}
	ui, err := uiam.New(uiam.Config{URL: uiamSrv.URL, SharedSecret: sharedSecret})
	if err != nil {
		tb.Fatal(err)
	}
	kr, err := keyring.New(bytes.Repeat([]byte{7}, keyring.KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	n.m, err = deputy.New(openStore(tb), deputy.Config{KeyServices: []deputy.KeyService{es, ui},
		APIKeyType: "uiam", Cipher: kr})
	if err != nil {
		tb.Fatal(err)
	}
	if err := n.m.Register(noopDefinition()); err != nil {
		tb.Fatal(err)
	}
	n.caller, err = es.Authenticate(context.Background(),
		deputy.Secret("Bearer "+n.uiamdev.SessionToken("bob")))
	if err != nil {
		tb.Fatalf("authenticate: %v", err)
	}
	return n
}

// grants returns how many keys the stand-ins have granted.
func (n *keyNode) grants() int { return len(n.esdev.Keys()) + len(n.uiamdev.Keys()) }

// noopDefinition is a task type whose runs do nothing.
func noopDefinition() deputy.Definition {
	return deputy.Definition{Type: "noop", Cost: deputy.CostTiny,
		Run: func(context.Context, *deputy.Run) (deputy.Result, error) {
			return deputy.Result{}, nil
		}}
}

// BenchmarkManager_BulkScheduleKeys schedules 1,000 tasks of one type with
// a user's UIAM session against the local stand-ins of Elasticsearch and
// UIAM, on SQLite; an op is the call of 1,000 tasks. It reports the keys
// granted per call, which must be two: one of each kind.
func BenchmarkManager_BulkScheduleKeys(b *testing.B) {
	n := newKeyNode(b)
	before, calls := n.grants(), 0
	for b.Loop() {
		res, err := n.m.BulkSchedule(b.Context(),
			bulkTasks(fmt.Sprintf("b%d", calls), "noop", 1000), &deputy.Options{Caller: n.caller})
		if err != nil || len(res.Errors) > 0 {
			b.Fatalf("BulkSchedule: %v, %v", res.Errors, err)
		}
		calls++
	}
	b.ReportMetric(float64(n.grants()-before)/float64(calls), "grants/op")
	b.ReportMetric(1000*float64(calls)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkManager_BulkSchedule schedules 1,000 tasks per call without
// credentials, on SQLite; an op is the call.
func BenchmarkManager_BulkSchedule(b *testing.B) {
	m, err := deputy.New(openStore(b), deputy.Config{})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Register(noopDefinition()); err != nil {
		b.Fatal(err)
	}
	calls := 0
	for b.Loop() {
		if _, err := m.BulkSchedule(b.Context(), bulkTasks(fmt.Sprintf("b%d", calls), "noop", 1000),
			nil); err != nil {
			b.Fatal(err)
		}
		calls++
	}
	b.ReportMetric(1000*float64(calls)/b.Elapsed().Seconds(), "tasks/s")
}
