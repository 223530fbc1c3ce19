package deputy

import (
	"context"
	"encoding/json"
	"time"
)

// Store persists tasks, the API keys they run with, and the queue of keys
// waiting to be invalidated. The sqlite and postgres packages implement it,
// and the storetest package holds the conformance suite both pass.
//
// Per-item outcomes are returned as a slice of errors parallel to the input,
// nil for success, and an [Error] with code [ENOTFOUND], [ECONFLICT] or
// [EINVALID] (a malformed key, such as two keys of one kind) otherwise; the
// second return value is for failures of the whole call, in which case
// nothing was written.
//
// Every write to a task, lease renewals included, increments its Version.
// Get, GetMany and Claim return tasks with their keys' secrets; Fetch returns
// the keys without secrets. GetMany returns a repeated id once.
//
// Key bookkeeping: every key a task references has a key record (written by
// RecordKeys, or implicitly for keys created by the user) that counts the
// tasks referencing it. When the count drops to zero in a write, the same
// transaction deletes the record and, unless the key was created by the user,
// queues the key for invalidation. So a key is queued exactly when nothing
// uses it any more, and a crash can never lose one. A key released by a
// task that is running (removed or re-keyed during its run) is queued with
// HoldUntil set to the task's RetryAt, so it outlives the run's lease; a
// key released by a completion that deletes its task has no hold, since the
// run is over. A key already queued is not queued twice: the later hold is
// kept.
type Store interface {
	// Insert stores new tasks with Version 1. The store sets CreatedAt and
	// UpdatedAt. A task whose id exists fails with ECONFLICT; a task whose
	// non-user key has no key record fails with ECONFLICT too. The other
	// tasks are stored. On success each task's Version and timestamps are
	// updated in place.
	Insert(ctx context.Context, tasks []*Task) ([]error, error)

	// Get returns a task with its keys, or an ENOTFOUND error.
	Get(ctx context.Context, id string) (*Task, error)

	// GetMany returns the tasks that exist among ids, in the order of ids.
	GetMany(ctx context.Context, ids []string) ([]*Task, error)

	// Fetch returns a page of tasks matching q, ordered by RunAt then ID.
	Fetch(ctx context.Context, q Query) (*Page, error)

	// Aggregate counts the enabled, recognized tasks matching q by type and
	// status.
	Aggregate(ctx context.Context, q Query) ([]Count, error)

	// Update writes tasks, each conditional on its Version: a task whose
	// stored version differs fails with ECONFLICT, a missing one with
	// ENOTFOUND. On success the task's Version and UpdatedAt are updated in
	// place. With ReplaceKeys, the task's keys are replaced by task.Keys and
	// the old keys' references are released.
	Update(ctx context.Context, tasks []*Task, opts UpdateOptions) ([]error, error)

	// Remove deletes tasks and releases their keys in the same transaction.
	// A missing task fails with ENOTFOUND.
	Remove(ctx context.Context, ids []string, now time.Time) ([]error, error)

	// Claim marks up to a budget of due tasks as running by p.Owner and
	// returns them with their keys. See [ClaimParams]. With p.Heartbeat, the
	// claim also records a heartbeat of p.Owner at p.Now, in the same
	// transaction.
	Claim(ctx context.Context, p ClaimParams) ([]*Task, error)

	// Complete writes the outcomes of runs. Each is conditional on the task
	// still being running under the claim that started the run; otherwise it
	// fails with ECONFLICT (ENOTFOUND when the task is gone) and nothing is
	// written. Completions never write Enabled, except to disable.
	Complete(ctx context.Context, cs []Completion) ([]error, error)

	// RenewLeases extends the leases of running tasks, each conditional on
	// its claim, like Complete.
	RenewLeases(ctx context.Context, ls []Lease) ([]error, error)

	// ReleaseOwned puts the tasks running (or claiming) under owner back to idle, due at
	// once, and returns how many it released. A restarting node calls it so
	// that its interrupted runs are retried without waiting for their leases.
	ReleaseOwned(ctx context.Context, owner string, now time.Time) (int, error)

	// Heartbeat records that node is alive at now. It never moves a node's
	// last heartbeat backwards.
	Heartbeat(ctx context.Context, node string, now time.Time) error

	// ReleaseDeadNodes releases the running tasks of nodes whose last
	// heartbeat is before cutoff, forgets those nodes, and returns how many
	// tasks it released. Only tasks claimed before cutoff are released: a
	// later claim proves its node alive even when a concurrent release read
	// that node's row before the claim.
	ReleaseDeadNodes(ctx context.Context, cutoff, now time.Time) (int, error)

	// Nodes lists the nodes that heartbeat, most recent first.
	Nodes(ctx context.Context) ([]Node, error)

	// RecordKeys writes key records for newly granted keys, referenced by no
	// task yet. Inserting or updating a task that references them adopts
	// them.
	RecordKeys(ctx context.Context, keys []Key) error

	// ReleaseKeys queues the given keys for invalidation if no task
	// references them, and is a no-op for keys still in use or already
	// queued. It is called for keys granted for a write that did not land.
	ReleaseKeys(ctx context.Context, refs []KeyRef, now time.Time) error

	// QueueUnusedKeys queues keys recorded before cutoff that no task ever
	// adopted: the grants of writes interrupted by a crash. It returns how
	// many it queued.
	QueueUnusedKeys(ctx context.Context, cutoff, now time.Time) (int, error)

	// KeyRefs returns how many tasks reference a key, and whether a key
	// record exists for it.
	KeyRefs(ctx context.Context, ref KeyRef) (refs int, recorded bool, err error)

	// PendingKeys lists queued keys, oldest first. With q.Due set it lists
	// only keys that may be invalidated now: queued at or before
	// q.QueuedBefore, no longer held by a run and past their next attempt
	// time, and referenced by no task.
	PendingKeys(ctx context.Context, q PendingQuery) ([]PendingKey, error)

	// KeysInvalidated removes invalidated keys from the queue.
	KeysInvalidated(ctx context.Context, seqs []int64) error

	// KeyInvalidationFailed records a failed invalidation attempt: the key
	// stays queued with attempts+1, the error and the next attempt time. An
	// unknown seq is ignored.
	KeyInvalidationFailed(ctx context.Context, seq int64, lastError string, next time.Time) error

	// Close releases the store's resources. It is idempotent.
	Close() error
}

// Notifier is implemented by stores that can wake other nodes when a task
// becomes due now, such as PostgreSQL with LISTEN/NOTIFY.
type Notifier interface {
	// Wakeups delivers a value whenever a task may have become due.
	Wakeups() <-chan struct{}
}

// UpdateOptions tunes [Store.Update].
type UpdateOptions struct {
	// Now is the write time.
	Now time.Time
	// ReplaceKeys replaces the tasks' keys with task.Keys.
	ReplaceKeys bool
}

// Query filters tasks for [Store.Fetch] and [Store.Aggregate]. Zero fields
// do not filter.
type Query struct {
	Types    []string
	Statuses []Status
	// Scope matches tasks whose scope contains it.
	Scope    string
	SpaceID  string
	UserName string
	Enabled  *bool
	// DueBefore matches tasks whose RunAt is at or before it.
	DueBefore *time.Time
	// Size is the page size. Zero means 100; at most 10000.
	Size int
	// After is the cursor of the previous page.
	After string
}

// Page is one page of [Store.Fetch].
type Page struct {
	Tasks []*Task
	// Next is the cursor of the next page, empty on the last page.
	Next string
}

// Count is one group of [Store.Aggregate].
type Count struct {
	Type   string `json:"task_type"`
	Status Status `json:"status"`
	Count  int    `json:"count"`
}

// ClaimParams describes one claim cycle.
//
// A task is claimable when it is enabled, its type is in Types, and it is
// idle with RunAt at or before Now, or running (or claiming) with RetryAt at
// or before Now. Claimable tasks are taken in order of EffectivePriority
// (highest first), then due time (RetryAt for expired runs, else RunAt),
// while their EffectiveCost fits Budget; the first task that does not fit
// ends the claim so that large tasks are not starved. A claim sets status
// running, OwnerID, StartedAt Now, Attempts+1, RetryAt Now+Lease,
// ScheduledAt to the due time, a new Version, and a new random
// ClaimVersion, unique to the claim: versions restart at 1 for a new task
// with the id of a removed one, claim tokens do not.
type ClaimParams struct {
	Owner string
	Now   time.Time
	Types []string
	// Budget is the free capacity in cost units.
	Budget int
	// MaxTasks bounds the number of tasks claimed. Zero means Budget.
	MaxTasks int
	Lease    time.Duration
	// Heartbeat records a heartbeat of Owner at Now with the claim. A node
	// sets it on a claim when its last heartbeat is getting old: a
	// heartbeat on every claim would write the node's row hundreds of
	// times a second under load.
	Heartbeat bool
}

// Completion is the outcome of one run.
type Completion struct {
	ID           string
	ClaimVersion int64
	Now          time.Time
	// Delete removes the task and releases its keys.
	Delete bool
	// The fields below apply when not deleting: the task goes back to idle,
	// without owner, start time or lease.
	// State replaces the state; nil keeps it.
	State    json.RawMessage
	RunAt    time.Time
	Attempts int
	// Schedule replaces the schedule; nil keeps it.
	Schedule *Schedule
	// Disable sets Enabled to false.
	Disable bool
}

// Lease extends a running task's lease to Until.
type Lease struct {
	ID           string
	ClaimVersion int64
	Until        time.Time
}

// Node is a deputy node that heartbeats into the store.
type Node struct {
	ID       string    `json:"id"`
	LastSeen time.Time `json:"last_seen"`
}

// KeyRef names an API key.
type KeyRef struct {
	Kind string
	ID   string
}

// Key is a granted API key as recorded in the store.
type Key struct {
	Kind string
	ID   string
	// Secret is the key encrypted for itself (bound to kind and id), used to
	// invalidate it when the service needs the key to revoke itself.
	Secret        []byte
	CreatedByUser bool
	UserName      string
	GrantedAt     time.Time
}

// PendingQuery filters [Store.PendingKeys].
type PendingQuery struct {
	Due          bool
	Now          time.Time
	QueuedBefore time.Time
	Kinds        []string
	Limit        int
}

// PendingKey is a key queued for invalidation.
type PendingKey struct {
	Seq      int64
	Kind     string
	ID       string
	Secret   []byte
	QueuedAt time.Time
	// HoldUntil is set when the key was queued while a run held it: the
	// key is not invalidated before the run's lease expires.
	HoldUntil     *time.Time
	Attempts      int
	LastError     string
	NextAttemptAt *time.Time
}
