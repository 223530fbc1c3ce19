package storetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
)

// Task types the suite schedules.
const (
	typeA = "test:a"
	typeB = "test:b"
	typeC = "test:c"
)

// at returns the base time moved by d.
func at(d time.Duration) time.Time { return base.Add(d) }

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

// micro returns t as a store returns it: UTC, truncated to the microsecond.
func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// newTask returns an enabled idle task of type typ due at runAt.
func newTask(id, typ string, runAt time.Time) *deputy.Task {
	return &deputy.Task{
		ID:                id,
		Type:              typ,
		Params:            json.RawMessage(`{}`),
		State:             json.RawMessage(`{}`),
		RunAt:             runAt,
		ScheduledAt:       runAt,
		Status:            deputy.StatusIdle,
		Enabled:           true,
		SpaceID:           deputy.DefaultSpace,
		EffectivePriority: deputy.PriorityNormal,
		EffectiveCost:     deputy.CostNormal,
	}
}

// withKeys sets task's keys and the matching user scope.
func withKeys(task *deputy.Task, keys ...deputy.TaskKey) *deputy.Task {
	task.Keys = keys
	task.UserScope = &deputy.UserScope{
		KeyIDs:   map[string]string{},
		SpaceID:  task.SpaceID,
		UserName: "elastic",
	}
	for _, k := range keys {
		task.UserScope.KeyIDs[k.Kind] = k.ID
		task.UserScope.APIKeyCreatedByUser = task.UserScope.APIKeyCreatedByUser || k.CreatedByUser
	}
	return task
}

// taskKey returns a key a task runs with; its secret differs from the key
// record's so that tests can tell which one the store queued.
func taskKey(kind, id string) deputy.TaskKey {
	return deputy.TaskKey{Kind: kind, ID: id, Secret: []byte("task-secret-" + kind + "-" + id)}
}

// userKey returns a key the user brought.
func userKey(kind, id string) deputy.TaskKey {
	k := taskKey(kind, id)
	k.CreatedByUser = true
	return k
}

// keyRecord returns the record of a granted key.
func keyRecord(kind, id string, grantedAt time.Time) deputy.Key {
	return deputy.Key{
		Kind:      kind,
		ID:        id,
		Secret:    recordSecret(kind, id),
		UserName:  "elastic",
		GrantedAt: grantedAt,
	}
}

// recordSecret is the secret keyRecord records.
func recordSecret(kind, id string) []byte { return []byte("record-secret-" + kind + "-" + id) }

// mustInsert inserts tasks and fails unless every one is stored.
func mustInsert(t *testing.T, s deputy.Store, tasks ...*deputy.Task) {
	t.Helper()
	errs, err := s.Insert(t.Context(), tasks)
	if err != nil {
		t.Fatalf("Insert: %v", err)
	}
	if len(errs) != len(tasks) {
		t.Fatalf("Insert returned %d errors for %d tasks", len(errs), len(tasks))
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Insert %s: %v", tasks[i].ID, err)
		}
	}
}

// mustGet returns a stored task.
func mustGet(t *testing.T, s deputy.Store, id string) *deputy.Task {
	t.Helper()
	task, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return task
}

// mustNotExist fails unless the task is gone.
func mustNotExist(t *testing.T, s deputy.Store, id string) {
	t.Helper()
	_, err := s.Get(t.Context(), id)
	wantCode(t, "Get "+id, err, deputy.ENOTFOUND)
}

// mustUpdate updates tasks and fails unless every one is written.
func mustUpdate(t *testing.T, s deputy.Store, opts deputy.UpdateOptions, tasks ...*deputy.Task) {
	t.Helper()
	errs, err := s.Update(t.Context(), tasks, opts)
	mustAllOK(t, "Update", errs, err, len(tasks))
}

// mustRemove removes tasks and fails unless every one is removed.
func mustRemove(t *testing.T, s deputy.Store, now time.Time, ids ...string) {
	t.Helper()
	errs, err := s.Remove(t.Context(), ids, now)
	mustAllOK(t, "Remove", errs, err, len(ids))
}

// mustClaim claims tasks.
func mustClaim(t *testing.T, s deputy.Store, p deputy.ClaimParams) []*deputy.Task {
	t.Helper()
	tasks, err := s.Claim(t.Context(), p)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return tasks
}

// claimOne claims the task with the given id, which must be the only
// claimable task of its type.
func claimOne(t *testing.T, s deputy.Store, id, typ, owner string, now time.Time) *deputy.Task {
	t.Helper()
	tasks := mustClaim(t, s, claimParams(owner, now, time.Minute, 10, typ))
	if got := taskIDs(tasks); !slices.Equal(got, []string{id}) {
		t.Fatalf("Claim at %s claimed %v, want [%s]", now.Format(time.RFC3339Nano), got, id)
	}
	return tasks[0]
}

// claimParams returns claim parameters with a budget and no task bound.
func claimParams(owner string, now time.Time, lease time.Duration, budget int,
	types ...string,
) deputy.ClaimParams {
	return deputy.ClaimParams{Owner: owner, Now: now, Types: types, Budget: budget, Lease: lease}
}

// mustComplete completes runs and fails unless every one is written.
func mustComplete(t *testing.T, s deputy.Store, cs ...deputy.Completion) {
	t.Helper()
	errs, err := s.Complete(t.Context(), cs)
	mustAllOK(t, "Complete", errs, err, len(cs))
}

// mustRecordKeys records keys.
func mustRecordKeys(t *testing.T, s deputy.Store, keys ...deputy.Key) {
	t.Helper()
	if err := s.RecordKeys(t.Context(), keys); err != nil {
		t.Fatalf("RecordKeys: %v", err)
	}
}

// mustPending lists queued keys.
func mustPending(t *testing.T, s deputy.Store, q deputy.PendingQuery) []deputy.PendingKey {
	t.Helper()
	keys, err := s.PendingKeys(t.Context(), q)
	if err != nil {
		t.Fatalf("PendingKeys: %v", err)
	}
	return keys
}

// allPending lists every queued key.
func allPending(t *testing.T, s deputy.Store) []deputy.PendingKey {
	t.Helper()
	return mustPending(t, s, deputy.PendingQuery{})
}

// wantRefs checks a key's reference count and whether it is recorded.
func wantRefs(t *testing.T, s deputy.Store, kind, id string, refs int, recorded bool) {
	t.Helper()
	n, ok, err := s.KeyRefs(t.Context(), deputy.KeyRef{Kind: kind, ID: id})
	if err != nil {
		t.Fatalf("KeyRefs %s/%s: %v", kind, id, err)
	}
	if n != refs || ok != recorded {
		t.Fatalf("KeyRefs %s/%s = %d, %t; want %d, %t", kind, id, n, ok, refs, recorded)
	}
}

// wantQueued checks that exactly the given keys are queued, in that order.
func wantQueued(t *testing.T, keys []deputy.PendingKey, want ...string) {
	t.Helper()
	if got := pendingIDs(keys); !slices.Equal(got, want) {
		t.Fatalf("queued keys = %v, want %v", got, want)
	}
}

// mustAllOK fails unless a bulk call succeeded for each of n items.
func mustAllOK(t *testing.T, op string, errs []error, err error, n int) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	if len(errs) != n {
		t.Fatalf("%s returned %d errors for %d items", op, len(errs), n)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s item %d: %v", op, i, err)
		}
	}
}

// wantItemCodes checks a bulk call's per-item outcomes: an empty code means
// success.
func wantItemCodes(t *testing.T, op string, errs []error, err error, codes ...string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	if len(errs) != len(codes) {
		t.Fatalf("%s returned %d errors, want %d", op, len(errs), len(codes))
	}
	for i, code := range codes {
		wantCode(t, fmt.Sprintf("%s item %d", op, i), errs[i], code)
	}
}

// wantCode checks err's domain code; an empty code means no error.
func wantCode(t *testing.T, op string, err error, code string) {
	t.Helper()
	if got := deputy.ErrorCode(err); got != code {
		t.Fatalf("%s: error %v (code %q), want code %q", op, err, got, code)
	}
}

// taskIDs returns the ids of tasks.
func taskIDs(tasks []*deputy.Task) []string {
	ids := make([]string, 0, len(tasks))
	for _, task := range tasks {
		ids = append(ids, task.ID)
	}
	return ids
}

// pendingIDs returns the ids of queued keys.
func pendingIDs(keys []deputy.PendingKey) []string {
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	return ids
}

// wantTime checks a time, as a store returns it.
func wantTime(t *testing.T, name string, got, want time.Time) {
	t.Helper()
	if !got.Equal(micro(want)) {
		t.Fatalf("%s = %s, want %s", name, fmtTime(got), fmtTime(micro(want)))
	}
}

// wantTimePtr checks an optional time, as a store returns it.
func wantTimePtr(t *testing.T, name string, got, want *time.Time) {
	t.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil || want == nil:
		t.Fatalf("%s = %s, want %s", name, fmtTimePtr(got), fmtTimePtr(want))
	default:
		wantTime(t, name, *got, *want)
	}
}

func fmtTime(t time.Time) string { return t.Format(time.RFC3339Nano) }

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "nil"
	}
	return fmtTime(*t)
}

// diffTask lists the differences between a task as written and as read
// back, ignoring the fields the store sets (Version, timestamps,
// ClaimVersion) unless the caller has set them on want.
func diffTask(want, got *deputy.Task) []string {
	var d []string
	add := func(field string, w, g any) {
		d = append(d, fmt.Sprintf("%s: got %v, want %v", field, g, w))
	}
	eqTime := func(field string, w, g time.Time) {
		if !g.Equal(micro(w)) || g.Location() != time.UTC {
			add(field, fmtTime(micro(w)), fmtTime(g)+" "+g.Location().String())
		}
	}
	eqTimePtr := func(field string, w, g *time.Time) {
		switch {
		case w == nil && g == nil:
		case w == nil || g == nil:
			add(field, fmtTimePtr(w), fmtTimePtr(g))
		default:
			eqTime(field, *w, *g)
		}
	}

	if got.ID != want.ID {
		add("ID", want.ID, got.ID)
	}
	if got.Type != want.Type {
		add("Type", want.Type, got.Type)
	}
	if !jsonEqual(want.Params, got.Params) {
		add("Params", string(want.Params), string(got.Params))
	}
	if !jsonEqual(want.State, got.State) {
		add("State", string(want.State), string(got.State))
	}
	if !want.Schedule.Equal(got.Schedule) {
		add("Schedule", jsonString(want.Schedule), jsonString(got.Schedule))
	}
	eqTime("RunAt", want.RunAt, got.RunAt)
	eqTime("ScheduledAt", want.ScheduledAt, got.ScheduledAt)
	eqTimePtr("StartedAt", want.StartedAt, got.StartedAt)
	eqTimePtr("RetryAt", want.RetryAt, got.RetryAt)
	if got.Attempts != want.Attempts {
		add("Attempts", want.Attempts, got.Attempts)
	}
	if got.Status != want.Status {
		add("Status", want.Status, got.Status)
	}
	if got.OwnerID != want.OwnerID {
		add("OwnerID", want.OwnerID, got.OwnerID)
	}
	if got.Traceparent != want.Traceparent {
		add("Traceparent", want.Traceparent, got.Traceparent)
	}
	if !slices.Equal(got.Scope, want.Scope) {
		add("Scope", want.Scope, got.Scope)
	}
	if got.Enabled != want.Enabled {
		add("Enabled", want.Enabled, got.Enabled)
	}
	if got.TimeoutOverride != want.TimeoutOverride {
		add("TimeoutOverride", want.TimeoutOverride, got.TimeoutOverride)
	}
	if !reflect.DeepEqual(got.Priority, want.Priority) {
		add("Priority", fmtPtr(want.Priority), fmtPtr(got.Priority))
	}
	if !reflect.DeepEqual(got.Cost, want.Cost) {
		add("Cost", fmtPtr(want.Cost), fmtPtr(got.Cost))
	}
	if got.SpaceID != want.SpaceID {
		add("SpaceID", want.SpaceID, got.SpaceID)
	}
	if !userScopeEqual(want.UserScope, got.UserScope) {
		add("UserScope", jsonString(want.UserScope), jsonString(got.UserScope))
	}
	if want.Version != 0 && got.Version != want.Version {
		add("Version", want.Version, got.Version)
	}
	if !want.CreatedAt.IsZero() {
		eqTime("CreatedAt", want.CreatedAt, got.CreatedAt)
	}
	if !want.UpdatedAt.IsZero() {
		eqTime("UpdatedAt", want.UpdatedAt, got.UpdatedAt)
	}
	if want.ClaimVersion != 0 && got.ClaimVersion != want.ClaimVersion {
		add("ClaimVersion", want.ClaimVersion, got.ClaimVersion)
	}
	if w, g := keysString(want.Keys), keysString(got.Keys); w != g {
		add("Keys", w, g)
	}
	if got.EffectivePriority != want.EffectivePriority {
		add("EffectivePriority", want.EffectivePriority, got.EffectivePriority)
	}
	if got.EffectiveCost != want.EffectiveCost {
		add("EffectiveCost", want.EffectiveCost, got.EffectiveCost)
	}
	return d
}

// wantTask fails when got differs from want; see diffTask.
func wantTask(t *testing.T, want, got *deputy.Task) {
	t.Helper()
	if d := diffTask(want, got); len(d) > 0 {
		t.Fatalf("task %s differs:\n\t%s", want.ID, strings.Join(d, "\n\t"))
	}
}

// jsonEqual compares JSON documents by value; an empty document is null.
func jsonEqual(a, b json.RawMessage) bool {
	var va, vb any
	if len(a) > 0 && json.Unmarshal(a, &va) != nil {
		return false
	}
	if len(b) > 0 && json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func userScopeEqual(a, b *deputy.UserScope) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.SpaceID == b.SpaceID && a.APIKeyCreatedByUser == b.APIKeyCreatedByUser &&
		a.UserName == b.UserName && maps.Equal(a.KeyIDs, b.KeyIDs)
}

// keysString renders keys in kind order, secrets included.
func keysString(keys []deputy.TaskKey) string {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b deputy.TaskKey) int { return strings.Compare(a.Kind, b.Kind) })
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "{%s %s %q user=%t}", k.Kind, k.ID, k.Secret, k.CreatedByUser)
	}
	return b.String()
}

// wantSecret checks a secret.
func wantSecret(t *testing.T, name string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s = %q, want %q", name, got, want)
	}
}
