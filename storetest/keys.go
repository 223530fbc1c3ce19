package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
)

// mustRelease releases keys of kind es at now.
func mustRelease(t *testing.T, s deputy.Store, now time.Time, ids ...string) {
	t.Helper()
	var refs []deputy.KeyRef
	for _, id := range ids {
		refs = append(refs, deputy.KeyRef{Kind: "es", ID: id})
	}
	if err := s.ReleaseKeys(t.Context(), refs, now); err != nil {
		t.Fatalf("ReleaseKeys: %v", err)
	}
}

func testKeys(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("RecordThenAdopt", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		wantRefs(t, s, "es", "k", 0, false)
		mustRecordKeys(t, s, keyRecord("es", "k", base))
		wantRefs(t, s, "es", "k", 0, true)

		mustInsert(t, s, withKeys(newTask("a", typeA, base), taskKey("es", "k")))
		wantRefs(t, s, "es", "k", 1, true)
		wantQueued(t, allPending(t, s))
	})

	t.Run("SharedKeyQueuedOnce", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "k", base))
		mustInsert(t, s, withKeys(newTask("a", typeA, base), taskKey("es", "k")),
			withKeys(newTask("b", typeA, base), taskKey("es", "k")))
		wantRefs(t, s, "es", "k", 2, true)

		mustRemove(t, s, at(time.Minute), "a")
		wantRefs(t, s, "es", "k", 1, true)
		wantQueued(t, allPending(t, s))

		mustRemove(t, s, at(2*time.Minute), "b")
		wantRefs(t, s, "es", "k", 0, false)
		wantQueued(t, allPending(t, s), "k")
	})

	t.Run("SharedKeyReplacedByOne", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "k", base), keyRecord("es", "n", base))
		mustInsert(t, s, withKeys(newTask("a", typeA, base), taskKey("es", "k")),
			withKeys(newTask("b", typeA, base), taskKey("es", "k")))

		task := mustGet(t, s, "a")
		withKeys(task, taskKey("es", "n"))
		mustUpdate(t, s, deputy.UpdateOptions{Now: at(time.Minute), ReplaceKeys: true}, task)
		wantRefs(t, s, "es", "k", 1, true)
		wantQueued(t, allPending(t, s))
	})

	t.Run("UserKeysRecordedOnInsertNeverQueued", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, withKeys(newTask("a", typeA, base), userKey("es", "mine")))
		wantRefs(t, s, "es", "mine", 1, true)
		mustInsert(t, s, withKeys(newTask("b", typeA, base), userKey("es", "mine")))
		wantRefs(t, s, "es", "mine", 2, true)

		mustRemove(t, s, at(time.Minute), "a")
		wantRefs(t, s, "es", "mine", 1, true)
		task := mustGet(t, s, "b")
		task.Keys, task.UserScope = nil, nil
		mustUpdate(t, s, deputy.UpdateOptions{Now: at(time.Minute), ReplaceKeys: true}, task)
		wantRefs(t, s, "es", "mine", 0, false)
		wantQueued(t, allPending(t, s))
	})

	t.Run("UserKeyRecordedAsGrantNeverQueued", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "mine", base))
		mustInsert(t, s, withKeys(newTask("a", typeA, base), userKey("es", "mine")))
		wantRefs(t, s, "es", "mine", 1, true)
		mustRemove(t, s, at(time.Minute), "a")
		wantRefs(t, s, "es", "mine", 0, false)
		wantQueued(t, allPending(t, s))
	})

	t.Run("ReleaseKeys", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "unused", base), keyRecord("es", "used", base),
			keyRecord("es", "queued", base))
		mustInsert(t, s, withKeys(newTask("a", typeA, base), taskKey("es", "used")))
		mustRelease(t, s, at(time.Minute), "queued")

		mustRelease(t, s, at(2*time.Minute), "unused", "used", "queued", "unknown")

		queued := allPending(t, s)
		wantQueued(t, queued, "queued", "unused")
		wantTime(t, "QueuedAt", queued[0].QueuedAt, at(time.Minute))
		wantTime(t, "QueuedAt", queued[1].QueuedAt, at(2*time.Minute))
		wantSecret(t, "queued secret", queued[1].Secret, recordSecret("es", "unused"))
		wantRefs(t, s, "es", "unused", 0, false)
		wantRefs(t, s, "es", "used", 1, true)
		wantRefs(t, s, "es", "unknown", 0, false)
	})

	t.Run("ReleaseKeysQueuedIsNoOp", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "k", base))
		mustRelease(t, s, at(time.Minute), "k")
		// Granted again while still queued: releasing it changes nothing.
		mustRecordKeys(t, s, keyRecord("es", "k", at(2*time.Minute)))
		mustRelease(t, s, at(3*time.Minute), "k")

		queued := allPending(t, s)
		wantQueued(t, queued, "k")
		wantTime(t, "QueuedAt", queued[0].QueuedAt, at(time.Minute))
		wantRefs(t, s, "es", "k", 0, true)
	})

	t.Run("ReleaseKeysUserRecord", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mine := keyRecord("es", "mine", base)
		mine.CreatedByUser = true
		mustRecordKeys(t, s, mine)
		mustRelease(t, s, at(time.Minute), "mine")
		wantQueued(t, allPending(t, s))
	})

	t.Run("QueueUnusedKeys", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mine := keyRecord("es", "mine", at(-2*time.Hour))
		mine.CreatedByUser = true
		mustRecordKeys(t, s, keyRecord("es", "old", at(-2*time.Hour)),
			keyRecord("es", "fresh", base), keyRecord("es", "adopted", at(-2*time.Hour)), mine)
		mustInsert(t, s, withKeys(newTask("a", typeA, base), taskKey("es", "adopted")))

		n, err := s.QueueUnusedKeys(t.Context(), at(-time.Hour), base)
		if err != nil || n != 1 {
			t.Fatalf("QueueUnusedKeys = %d, %v; want 1", n, err)
		}
		queued := allPending(t, s)
		wantQueued(t, queued, "old")
		wantTime(t, "QueuedAt", queued[0].QueuedAt, base)
		wantSecret(t, "queued secret", queued[0].Secret, recordSecret("es", "old"))
		wantRefs(t, s, "es", "old", 0, false)
		wantRefs(t, s, "es", "fresh", 0, true)
		wantRefs(t, s, "es", "adopted", 1, true)

		n, err = s.QueueUnusedKeys(t.Context(), at(-time.Hour), at(time.Minute))
		if err != nil || n != 0 {
			t.Fatalf("second QueueUnusedKeys = %d, %v; want 0", n, err)
		}
	})
}

// pendingFixture queues keys that the PendingKeys filters tell apart; see
// the comments for when each is due.
func pendingFixture(t *testing.T, s deputy.Store) {
	t.Helper()
	var records []deputy.Key
	for _, id := range []string{"k1", "k2", "k3", "k4", "k6", "k7"} {
		records = append(records, keyRecord("es", id, at(-4*time.Hour)))
	}
	records = append(records, keyRecord("uiam", "u5", at(-4*time.Hour)))
	mustRecordKeys(t, s, records...)

	// k1, k2 and u5 are due; k3 is too recent.
	mustRelease(t, s, at(-3*time.Hour), "k1")
	mustRelease(t, s, at(-2*time.Hour), "k2")
	err := s.ReleaseKeys(t.Context(), []deputy.KeyRef{{Kind: "uiam", ID: "u5"}}, at(-2*time.Hour))
	if err != nil {
		t.Fatalf("ReleaseKeys: %v", err)
	}
	mustRelease(t, s, at(-30*time.Minute), "k3")

	// k4 is held by a run until base+1h.
	mustInsert(t, s, withKeys(newTask("held", typeA, at(-4*time.Hour)), taskKey("es", "k4")))
	p := claimParams("node-1", at(-3*time.Hour), 4*time.Hour, 10, typeA)
	if got := taskIDs(mustClaim(t, s, p)); len(got) != 1 {
		t.Fatalf("Claim = %v, want [held]", got)
	}
	mustRemove(t, s, at(-150*time.Minute), "held")

	// k6 failed once and is retried at base+30m.
	mustRelease(t, s, at(-135*time.Minute), "k6")
	for _, k := range allPending(t, s) {
		if k.ID == "k6" {
			err := s.KeyInvalidationFailed(t.Context(), k.Seq, "boom", at(30*time.Minute))
			if err != nil {
				t.Fatalf("KeyInvalidationFailed: %v", err)
			}
		}
	}

	// k7 was queued, then granted again and adopted by a task.
	mustRelease(t, s, at(-165*time.Minute), "k7")
	mustRecordKeys(t, s, keyRecord("es", "k7", at(-time.Hour)))
	mustInsert(t, s, withKeys(newTask("reuser", typeB, base), taskKey("es", "k7")))
}

func testPendingKeys(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("All", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		pendingFixture(t, s)

		keys := allPending(t, s)
		wantQueued(t, keys, "k1", "k7", "k4", "k6", "k2", "u5", "k3")
		byID := map[string]deputy.PendingKey{}
		for _, k := range keys {
			byID[k.ID] = k
		}
		if k := byID["u5"]; k.Kind != "uiam" || k.Attempts != 0 || k.HoldUntil != nil {
			t.Fatalf("u5 = %+v", k)
		}
		wantSecret(t, "u5 secret", byID["u5"].Secret, recordSecret("uiam", "u5"))
		wantTime(t, "u5 QueuedAt", byID["u5"].QueuedAt, at(-2*time.Hour))
		wantTimePtr(t, "k4 HoldUntil", byID["k4"].HoldUntil, ptr(at(time.Hour)))
		if k := byID["k6"]; k.Attempts != 1 || k.LastError != "boom" {
			t.Fatalf("k6: attempts %d, last error %q; want 1, boom", k.Attempts, k.LastError)
		}
		wantTimePtr(t, "k6 NextAttemptAt", byID["k6"].NextAttemptAt, ptr(at(30*time.Minute)))
	})

	t.Run("Due", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		pendingFixture(t, s)

		tests := []struct {
			name string
			q    deputy.PendingQuery
			want []string
		}{
			{"Now", deputy.PendingQuery{Due: true, Now: base, QueuedBefore: at(-time.Hour)},
				[]string{"k1", "k2", "u5"}},
			{"Later", deputy.PendingQuery{Due: true, Now: at(2 * time.Hour),
				QueuedBefore: at(-time.Hour)},
				[]string{"k1", "k4", "k6", "k2", "u5"}},
			{"QueuedBeforeInclusive", deputy.PendingQuery{Due: true, Now: base,
				QueuedBefore: at(-2 * time.Hour)}, []string{"k1", "k2", "u5"}},
			{"QueuedBeforeExclusive", deputy.PendingQuery{Due: true, Now: base,
				QueuedBefore: at(-2*time.Hour - time.Microsecond)}, []string{"k1"}},
			{"Kinds", deputy.PendingQuery{Due: true, Now: base, QueuedBefore: at(-time.Hour),
				Kinds: []string{"uiam"}}, []string{"u5"}},
			{"Limit", deputy.PendingQuery{Due: true, Now: base, QueuedBefore: at(-time.Hour),
				Limit: 2}, []string{"k1", "k2"}},
			{"NotDueKinds", deputy.PendingQuery{Kinds: []string{"es"}, Limit: 3},
				[]string{"k1", "k7", "k4"}},
		}
		for _, tt := range tests {
			if got := pendingIDs(mustPending(t, s, tt.q)); !slices.Equal(got, tt.want) {
				t.Fatalf("%s: PendingKeys = %v, want %v", tt.name, got, tt.want)
			}
		}
	})

	t.Run("RequeuedKeyHeldByRun", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		// k is queued, granted again, adopted by a task and released by it
		// while it runs: it must not be due before the run's lease ends.
		mustRecordKeys(t, s, keyRecord("es", "k", at(-3*time.Hour)))
		mustRelease(t, s, at(-2*time.Hour), "k")
		mustRecordKeys(t, s, keyRecord("es", "k", at(-time.Hour)))
		mustInsert(t, s, withKeys(newTask("a", typeA, at(-time.Hour)), taskKey("es", "k")))
		claimed := claimOne(t, s, "a", typeA, "node-1", base)
		mustRemove(t, s, at(time.Second), "a")

		q := deputy.PendingQuery{Due: true, Now: claimed.RetryAt.Add(-time.Microsecond),
			QueuedBefore: at(time.Second)}
		wantQueued(t, mustPending(t, s, q))
		q.Now = *claimed.RetryAt
		if got := pendingIDs(mustPending(t, s, q)); len(got) == 0 || got[0] != "k" {
			t.Fatalf("PendingKeys after the lease = %v, want k", got)
		}
	})

	t.Run("KeysInvalidated", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		pendingFixture(t, s)
		keys := allPending(t, s)

		err := s.KeysInvalidated(t.Context(), []int64{keys[0].Seq, keys[2].Seq, keys[0].Seq + 1000})
		if err != nil {
			t.Fatalf("KeysInvalidated: %v", err)
		}
		wantQueued(t, allPending(t, s), "k7", "k6", "k2", "u5", "k3")
	})

	t.Run("KeyInvalidationFailed", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "k", base))
		mustRelease(t, s, base, "k")
		seq := allPending(t, s)[0].Seq

		for i, next := range []time.Time{at(time.Minute), at(5 * time.Minute)} {
			msg := []string{"first", "second"}[i]
			if err := s.KeyInvalidationFailed(t.Context(), seq, msg, next); err != nil {
				t.Fatalf("KeyInvalidationFailed: %v", err)
			}
		}

		k := allPending(t, s)[0]
		if k.Seq != seq || k.Attempts != 2 || k.LastError != "second" {
			t.Fatalf("key after two failures = %+v", k)
		}
		wantTimePtr(t, "NextAttemptAt", k.NextAttemptAt, ptr(at(5*time.Minute)))
		wantTime(t, "QueuedAt", k.QueuedAt, base)
		q := deputy.PendingQuery{Due: true, Now: at(4 * time.Minute), QueuedBefore: base}
		wantQueued(t, mustPending(t, s, q))
		q.Now = at(5 * time.Minute)
		wantQueued(t, mustPending(t, s, q), "k")
	})
}
