package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/deputyhq/deputy"
)

func TestBulkSchedule(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		f.schedule("/api/tasks", `{"id":"taken","task_type":"noop"}`)
		w := f.do("POST", "/api/tasks/_bulk_schedule", `{"tasks":[
			{"id":"a","task_type":"noop","schedule":{"interval":"1m"}},
			{"id":"taken","task_type":"noop"},
			{"id":"b","task_type":"check","params":{"url":"http://x"}}]}`)
		want(t, w, http.StatusOK)
		golden(t, "bulk_schedule", w.Body.Bytes())
		if got := f.tasks(); got != "a,b,taken" {
			t.Fatalf("stored %q, want a,b,taken", got)
		}
	})

	t.Run("Space", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		w := f.do("POST", "/s/ops/api/tasks/_bulk_schedule", `{"tasks":[{"id":"a","task_type":"noop"}]}`)
		want(t, w, http.StatusOK)
		if got := f.get("a").SpaceID; got != "ops" {
			t.Fatalf("space = %q, want ops", got)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		w := f.do("POST", "/api/tasks/_bulk_schedule", `{"tasks":[]}`)
		want(t, w, http.StatusOK)
		if got := decode[bulkResult](t, w); len(got.Tasks) != 0 || len(got.Errors) != 0 {
			t.Fatalf("result = %+v, want empty", got)
		}
		if !strings.Contains(w.Body.String(), `"tasks":[]`) ||
			!strings.Contains(w.Body.String(), `"errors":[]`) {
			t.Fatalf("body = %s, want empty arrays rather than null", w.Body)
		}
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct{ name, body, msg string }{
			{"NoTasks", `{}`, "tasks is required"},
			{"UnknownField", `{"tasks":[],"x":1}`, `unknown field "x"`},
			{"UnknownType", `{"tasks":[{"task_type":"noop"},{"task_type":"nope"}]}`,
				`task 1: unknown task type "nope"`},
			{"BadInterval", `{"tasks":[{"task_type":"noop","schedule":{"interval":"1y"}}]}`,
				"invalid interval"},
			{"OtherSpace", `{"tasks":[{"task_type":"noop"},{"task_type":"noop","space_id":"x"}]}`,
				"task 1: space_id"},
			{"RunAt", `{"tasks":[{"task_type":"noop","run_at":"now"}]}`, `"run_at"`},
			{"Duplicate", `{"tasks":[{"id":"a","task_type":"noop"},{"id":"a","task_type":"noop"}]}`,
				"appears twice"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				f := setup(t, options{})
				w := f.do("POST", "/api/tasks/_bulk_schedule", tt.body)
				wantError(t, w, http.StatusBadRequest, deputy.EINVALID, tt.msg)
				if got := f.tasks(); got != "" {
					t.Fatalf("stored %q, want nothing", got)
				}
			})
		}
	})
}

// bulkFixture holds a, b and c in the default space and o in another.
func bulkFixture(t *testing.T) *fixture {
	f := setup(t, options{})
	w := f.do("POST", "/api/tasks/_bulk_schedule", `{"tasks":[
		{"id":"a","task_type":"noop","schedule":{"interval":"1m"},"state":{"n":1}},
		{"id":"b","task_type":"noop","schedule":{"interval":"1m"},"state":{"n":2}},
		{"id":"c","task_type":"check","params":{"url":"http://x"},"enabled":false}]}`)
	want(t, w, http.StatusOK)
	f.schedule("/s/other/api/tasks", `{"id":"o","task_type":"noop","state":{"n":3}}`)
	return f
}

func TestBulkUpdate(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := bulkFixture(t)
		w := f.do("POST", "/api/tasks/_bulk_update",
			`{"ids":["b","missing","o","a","a"],"schedule":{"interval":"1h"},"state":{"n":9}}`)
		want(t, w, http.StatusOK)
		golden(t, "bulk_update", w.Body.Bytes())
		res := decode[bulkResult](t, w)
		if got := ids(res.Tasks); got != "b,a" {
			t.Fatalf("tasks = %q, want b,a", got)
		}
		if got := res.errorIDs(); got != "missing:Not Found,o:Not Found" {
			t.Fatalf("errors = %q, want missing and o not found", got)
		}
		if got := f.get("a"); got.Schedule.Interval != "1h" || string(got.State) != `{"n":9}` {
			t.Fatalf("a = %s %s, want 1h and n 9", got.Schedule.Interval, got.State)
		}
		if got := f.get("o"); string(got.State) != `{"n":3}` {
			t.Fatalf("o state = %s, want untouched", got.State)
		}
	})

	t.Run("ParamsAndEnabled", func(t *testing.T) {
		t.Parallel()
		f := bulkFixture(t)
		w := f.do("POST", "/api/tasks/_bulk_update",
			`{"ids":["a","c"],"params":{"url":"http://y"},"enabled":true,"state":null}`)
		want(t, w, http.StatusOK)
		res := decode[bulkResult](t, w)
		if got := ids(res.Tasks); got != "a,c" {
			t.Fatalf("tasks = %q, want a,c; errors %+v", got, res.Errors)
		}
		if got := f.get("c"); !got.Enabled || string(got.Params) != `{"url":"http://y"}` {
			t.Fatalf("c = enabled %v params %s", got.Enabled, got.Params)
		}
		if got := f.get("a"); string(got.State) != `{"n":1}` {
			t.Fatalf("a state = %s, want untouched by a null state", got.State)
		}
	})

	t.Run("ItemInvalid", func(t *testing.T) {
		t.Parallel()
		f := bulkFixture(t)
		w := f.do("POST", "/api/tasks/_bulk_update", `{"ids":["a","c"],"params":{"x":1}}`)
		want(t, w, http.StatusOK)
		res := decode[bulkResult](t, w)
		if got := ids(res.Tasks); got != "a" {
			t.Fatalf("tasks = %q, want a", got)
		}
		if len(res.Errors) != 1 || res.Errors[0].ID != "c" || res.Errors[0].Status != 400 ||
			res.Errors[0].Error.Code != deputy.EINVALID ||
			!strings.Contains(res.Errors[0].Error.Message, "url is required") {
			t.Fatalf("errors = %+v, want c invalid", res.Errors)
		}
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		t.Parallel()
		f := bulkFixture(t)
		for _, tt := range []struct{ body, msg string }{
			{`{"schedule":{"interval":"1h"}}`, "ids is required"},
			{`{"ids":["a"]}`, "nothing to update"},
			{`{"ids":["a"],"state":null}`, "nothing to update"},
			{`{"ids":["a"],"schedule":{"interval":"1x"}}`, "invalid interval"},
			{`{"ids":["a"],"schedule":{"rrule":{"freq":"DAILY"}}}`, "tzid is required"},
			{`{"ids":["a"],"state":[1]}`, "state must be a JSON object"},
			{`{"ids":["a"],"state":{},"bogus":true}`, `unknown field "bogus"`},
			{`{"ids":"a","state":{}}`, `field "ids" must be an array`},
			{`{"ids":["a"],"regenerate_api_key":true}`, "needs the caller's credentials"},
		} {
			w := f.do("POST", "/api/tasks/_bulk_update", tt.body)
			wantError(t, w, http.StatusBadRequest, deputy.EINVALID, tt.msg)
		}
		if got := f.get("a"); got.Version != 1 {
			t.Fatalf("a version = %d, want 1: nothing written", got.Version)
		}
	})

	t.Run("EmptyIDs", func(t *testing.T) {
		t.Parallel()
		f := bulkFixture(t)
		w := f.do("POST", "/api/tasks/_bulk_update", `{"ids":[],"state":{}}`)
		want(t, w, http.StatusOK)
		if got := decode[bulkResult](t, w); len(got.Tasks)+len(got.Errors) != 0 {
			t.Fatalf("result = %+v, want empty", got)
		}
	})
}

func TestBulkRemove(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := bulkFixture(t)
		w := f.do("POST", "/api/tasks/_bulk_delete", `{"ids":["a","o","missing","c"]}`)
		want(t, w, http.StatusOK)
		golden(t, "bulk_delete", w.Body.Bytes())
		if got := f.tasks(); got != "b,o" {
			t.Fatalf("stored %q, want b,o", got)
		}
	})

	t.Run("Space", func(t *testing.T) {
		t.Parallel()
		f := bulkFixture(t)
		w := f.do("POST", "/s/other/api/tasks/_bulk_delete", `{"ids":["a","o"]}`)
		want(t, w, http.StatusOK)
		if got := decode[bulkResult](t, w); strings.Join(got.Deleted, ",") != "o" ||
			got.errorIDs() != "a:Not Found" {
			t.Fatalf("result = %+v, want o deleted and a not found", got)
		}
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		t.Parallel()
		f := bulkFixture(t)
		wantError(t, f.do("POST", "/api/tasks/_bulk_delete", `{}`), http.StatusBadRequest,
			deputy.EINVALID, "ids is required")
		wantError(t, f.do("POST", "/api/tasks/_bulk_delete", `{"ids":["a"],"force":true}`),
			http.StatusBadRequest, deputy.EINVALID, `unknown field "force"`)
		if got := f.tasks(); got != "a,b,c,o" {
			t.Fatalf("stored %q, want everything kept", got)
		}
	})
}

func TestBulkEnable(t *testing.T) {
	t.Parallel()
	f := bulkFixture(t)
	w := f.do("POST", "/api/tasks/_bulk_enable", `{"ids":["c","a","o"],"run_soon":true}`)
	want(t, w, http.StatusOK)
	res := decode[bulkResult](t, w)
	if ids(res.Tasks) != "c,a" || res.errorIDs() != "o:Not Found" {
		t.Fatalf("result = %s / %s, want c,a and o not found", ids(res.Tasks), res.errorIDs())
	}
	if got := f.get("c"); !got.Enabled || !got.RunAt.Equal(epoch) {
		t.Fatalf("c = enabled %v run_at %v, want enabled now", got.Enabled, got.RunAt)
	}
	if got := f.get("o"); !got.Enabled {
		t.Fatalf("o was disabled; want untouched")
	}
	wantError(t, f.do("POST", "/api/tasks/_bulk_enable", `{"ids":["c"],"run_soon":"yes"}`),
		http.StatusBadRequest, deputy.EINVALID, `field "run_soon" must be a boolean`)
}

func TestBulkDisable(t *testing.T) {
	t.Parallel()
	f := bulkFixture(t)
	w := f.do("POST", "/api/tasks/_bulk_disable", `{"ids":["a","o"],"clear_state":true}`)
	want(t, w, http.StatusOK)
	res := decode[bulkResult](t, w)
	if ids(res.Tasks) != "a" || res.errorIDs() != "o:Not Found" {
		t.Fatalf("result = %s / %s, want a and o not found", ids(res.Tasks), res.errorIDs())
	}
	if got := f.get("a"); got.Enabled || string(got.State) != "{}" {
		t.Fatalf("a = enabled %v state %s, want disabled with {}", got.Enabled, got.State)
	}
	if got := f.get("o"); !got.Enabled || string(got.State) != `{"n":3}` {
		t.Fatalf("o = enabled %v state %s, want untouched", got.Enabled, got.State)
	}

	// Without clear_state the state stays.
	w = f.do("POST", "/api/tasks/_bulk_disable", `{"ids":["b"]}`)
	want(t, w, http.StatusOK)
	if got := f.get("b"); got.Enabled || string(got.State) != `{"n":2}` {
		t.Fatalf("b = enabled %v state %s, want disabled with its state", got.Enabled, got.State)
	}
}
