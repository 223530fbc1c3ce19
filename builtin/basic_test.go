package builtin_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/builtin"
)

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func TestNoop(t *testing.T) {
	t.Parallel()
	def := builtin.Noop()
	if def.Cost != deputy.CostTiny {
		t.Fatalf("cost = %v, want tiny", def.Cost)
	}
	res, err := runTask(t, def, `{}`, `{"a":1}`, nil)
	if err != nil || res.State != nil || res.Delete {
		t.Fatalf("run = %+v, %v; want an empty result", res, err)
	}
	if err := def.ValidateParams(json.RawMessage(`{"x":1}`)); err == nil {
		t.Fatalf("noop accepted a param")
	}
}

func TestFail(t *testing.T) {
	t.Parallel()
	def := builtin.Fail()

	run := func(params string, attempt int) error {
		task := &deputy.Task{ID: "f", Type: def.Type, Params: json.RawMessage(params), Attempts: attempt}
		_, err := def.Run(context.Background(), &deputy.Run{Task: task})
		return err
	}
	if err := run(`{"message":"boom"}`, 1); err == nil || err.Error() != "boom" {
		t.Fatalf("err = %v, want boom", err)
	}
	if err := run(`{"succeed_on_attempt":3}`, 2); err == nil {
		t.Fatalf("attempt 2 succeeded, want a failure")
	}
	if err := run(`{"succeed_on_attempt":3}`, 3); err != nil {
		t.Fatalf("attempt 3: %v, want success", err)
	}
	var unrecoverable *deputy.UnrecoverableError
	if err := run(`{"unrecoverable":true}`, 1); !errors.As(err, &unrecoverable) {
		t.Fatalf("err = %v, want unrecoverable", err)
	}
	if err := def.ValidateParams(json.RawMessage(`{"succeed_on_attempt":-1}`)); err == nil {
		t.Fatalf("negative succeed_on_attempt accepted")
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	def := builtin.Sleep()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		if _, err := runTask(t, def, `{"duration":"10ms"}`, "", nil); err != nil {
			t.Fatalf("run: %v", err)
		}
	})

	t.Run("ErrCancelled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeoutCause(context.Background(), 20*time.Millisecond, deputy.ErrTimeout)
		defer cancel()
		task := &deputy.Task{ID: "s", Type: def.Type, Params: json.RawMessage(`{"duration":"1h"}`)}
		_, err := def.Run(ctx, &deputy.Run{Task: task})
		if !errors.Is(err, deputy.ErrTimeout) {
			t.Fatalf("err = %v, want the timeout cause", err)
		}
	})

	t.Run("ErrParams", func(t *testing.T) {
		t.Parallel()
		for params, want := range map[string]string{
			`{}`:                      "duration is required",
			`{"duration":"x"}`:        "invalid duration",
			`{"duration":"2d"}`:       "exceeds 1d",
			`{"duration":"1s","a":1}`: "unknown param",
		} {
			err := def.ValidateParams(json.RawMessage(params))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("validate %s = %v, want %q", params, err, want)
			}
		}
	})
}

// TestDefinitions_Complete checks that every built-in has a unique type, a
// title, params validation and a run function.
func TestDefinitions_Complete(t *testing.T) {
	t.Parallel()
	defs := []deputy.Definition{
		builtin.HTTP(builtin.HTTPConfig{}), builtin.Noop(), builtin.Fail(), builtin.Sleep(),
	}
	seen := map[string]bool{}
	for _, d := range defs {
		if d.Type == "" || d.Run == nil || d.ValidateParams == nil || d.Title == "" || seen[d.Type] {
			t.Fatalf("definition %q is incomplete or repeated", d.Type)
		}
		seen[d.Type] = true
	}
}
