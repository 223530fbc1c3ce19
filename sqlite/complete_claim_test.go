package sqlite_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/sqlite"
	"github.com/deputyhq/deputy/storetest"
)

// TestStore_CompleteAndClaim runs the conformance suite with every Complete
// and Claim made through CompleteAndClaim, so that the combined statements
// meet the contract of each.
func TestStore_CompleteAndClaim(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, func(t *testing.T) deputy.Store {
		return combined{MustOpen(t)}
	})
}

// combined completes with a claim that finds nothing, and claims with the
// outcome of a run of a task that does not exist: both statements run.
type combined struct{ *sqlite.DB }

func (s combined) Complete(ctx context.Context, cs []deputy.Completion) ([]error, error) {
	errs, tasks, err := s.CompleteAndClaim(ctx, cs, deputy.ClaimParams{Owner: "nobody",
		Now: time.Now(), Types: []string{"test:never"}, Budget: 1, Lease: time.Second})
	if err == nil && len(tasks) > 0 {
		err = fmt.Errorf("claimed %d tasks of a type that has none", len(tasks))
	}
	return errs, err
}

func (s combined) Claim(ctx context.Context, p deputy.ClaimParams) ([]*deputy.Task, error) {
	errs, tasks, err := s.CompleteAndClaim(ctx,
		[]deputy.Completion{{ID: "test:absent", ClaimVersion: 1, Now: p.Now}}, p)
	if err == nil && deputy.ErrorCode(errs[0]) != deputy.ENOTFOUND {
		err = fmt.Errorf("outcome of a missing task: %v, want not found", errs[0])
	}
	return tasks, err
}
