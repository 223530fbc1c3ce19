// Package storetest is the conformance suite for [deputy.Store]
// implementations. Every store runs it from its own tests:
//
//	func TestStore(t *testing.T) {
//		t.Parallel()
//		storetest.Exercise(t, func(t *testing.T) deputy.Store {
//			return mustOpen(t) // a fresh, empty store closed by t.Cleanup
//		})
//	}
//
// The suite injects all times from a fixed base time, so it never sleeps.
// Stores keep times with microsecond precision in UTC; the suite compares
// times truncated to the microsecond.
package storetest

import (
	"testing"
	"time"

	"github.com/deputyhq/deputy"
)

// base is the fixed time every test schedules around. It has a microsecond
// part so that a store losing precision is caught.
var base = time.Date(2030, time.January, 2, 3, 4, 5, 123456000, time.UTC)

// Exercise runs the conformance suite. newStore must return a fresh, empty
// store for each call and arrange for it to be closed when t ends; the suite
// calls it once per subtest and runs subtests in parallel.
func Exercise(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Helper()

	groups := []struct {
		name string
		run  func(t *testing.T, newStore func(t *testing.T) deputy.Store)
	}{
		{"Insert", testInsert},
		{"Get", testGet},
		{"GetMany", testGetMany},
		{"Fetch", testFetch},
		{"Aggregate", testAggregate},
		{"Update", testUpdate},
		{"Remove", testRemove},
		{"Claim", testClaim},
		{"Complete", testComplete},
		{"RenewLeases", testRenewLeases},
		{"ReleaseOwned", testReleaseOwned},
		{"Nodes", testNodes},
		{"Keys", testKeys},
		{"PendingKeys", testPendingKeys},
		{"Close", testClose},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			g.run(t, newStore)
		})
	}
}

// testClose checks that Close is idempotent.
func testClose(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("Idempotent", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if err := s.Close(); err != nil {
			t.Fatalf("first Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}
