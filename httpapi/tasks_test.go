package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
)

func TestSchedule(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		w := f.do("POST", "/api/tasks", `{"id":"t1","task_type":"noop","params":{"b":1, "a":2},
			"schedule":{"interval":"5m"},"scope":["alerting"]}`)
		want(t, w, http.StatusCreated)
		golden(t, "schedule", w.Body.Bytes())
		if got := f.get("t1"); got.SpaceID != deputy.DefaultSpace || !got.RunAt.Equal(epoch) {
			t.Fatalf("stored task space %q run_at %v, want default and %v", got.SpaceID, got.RunAt, epoch)
		}
	})

	t.Run("Space", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		task := f.schedule("/s/marketing/api/tasks", `{"id":"t1","task_type":"noop"}`)
		if task.SpaceID != "marketing" || f.get("t1").SpaceID != "marketing" {
			t.Fatalf("space = %q, want marketing", task.SpaceID)
		}
		task = f.schedule("/s/marketing/api/tasks",
			`{"id":"t2","task_type":"noop","space_id":"marketing","run_at":"2026-05-01T00:00:00+02:00"}`)
		if want := time.Date(2026, 4, 30, 22, 0, 0, 0, time.UTC); !task.RunAt.Equal(want) {
			t.Fatalf("run_at = %v, want %v", task.RunAt, want)
		}
	})

	t.Run("ErrConflict", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		f.schedule("/api/tasks", `{"id":"t1","task_type":"noop"}`)
		w := f.do("POST", "/api/tasks", `{"id":"t1","task_type":"noop"}`)
		wantError(t, w, http.StatusConflict, deputy.ECONFLICT, "t1")
	})

	t.Run("ErrTooLarge", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{maxBody: 64})
		w := f.do("POST", "/api/tasks",
			`{"task_type":"noop","params":{"x":"`+strings.Repeat("a", 100)+`"}}`)
		wantError(t, w, http.StatusRequestEntityTooLarge, deputy.EINVALID, "exceeds 64 bytes")
		if got := f.tasks(); got != "" {
			t.Fatalf("stored %q, want nothing", got)
		}
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			name, path, body, msg string
		}{
			{"MalformedJSON", "", `{"task_type":"noop",}`, "malformed JSON at offset 21"},
			{"Truncated", "", `{"task_type":"noop"`, "ends too early"},
			{"Empty", "", ``, "request body is empty"},
			{"Array", "", `[]`, "must be a JSON object, not array"},
			{"Trailing", "", `{"task_type":"noop"} {}`, "unexpected data after the JSON value"},
			{"UnknownField", "", `{"task_type":"noop","bogus":1}`, `unknown field "bogus"`},
			{"WrongType", "", `{"task_type":5}`, `field "task_type" must be a string, not number`},
			{"NestedWrongType", "", `{"task_type":"noop","schedule":{"interval":5}}`,
				`field "schedule.interval" must be a string`},
			{"MissingType", "", `{"id":"a"}`, "task_type is required"},
			{"UnknownType", "", `{"task_type":"nope"}`, `unknown task type "nope"`},
			{"BadInterval", "", `{"task_type":"noop","schedule":{"interval":"5x"}}`, "invalid interval"},
			{"ZeroInterval", "", `{"task_type":"noop","schedule":{"interval":"0s"}}`, "invalid interval"},
			{"EmptySchedule", "", `{"task_type":"noop","schedule":{}}`, "one of interval or rrule"},
			{"RRuleWithoutTZID", "", `{"task_type":"noop","schedule":{"rrule":{"freq":"DAILY"}}}`,
				"tzid is required"},
			{"RRuleBadDTStart", "",
				`{"task_type":"noop","schedule":{"rrule":{"freq":"DAILY","tzid":"UTC","dtstart":"soon"}}}`,
				`invalid time "soon"`},
			{"RunAtNotATime", "", `{"task_type":"noop","run_at":"tomorrow"}`, `"run_at": "tomorrow"`},
			{"RunAtNumber", "", `{"task_type":"noop","run_at":5}`, `field "run_at" must be`},
			{"ParamsNotObject", "", `{"task_type":"noop","params":[1]}`, "params must be a JSON object"},
			{"InvalidParams", "", `{"task_type":"check","params":{}}`, "url is required"},
			{"UnknownCost", "", `{"task_type":"noop","cost":"huge"}`, `unknown cost "huge"`},
			{"BadPriority", "", `{"task_type":"noop","priority":500}`, "priority 500 out of range"},
			{"IDWithSlash", "", `{"id":"a/b","task_type":"noop"}`, "slash"},
			{"OtherSpace", "", `{"task_type":"noop","space_id":"other"}`, "differs from the space"},
			{"BadSpace", "/s/Bad!/api/tasks", `{"task_type":"noop"}`, "space id"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				f := setup(t, options{})
				path := tt.path
				if path == "" {
					path = "/api/tasks"
				}
				w := f.do("POST", path, tt.body)
				wantError(t, w, http.StatusBadRequest, deputy.EINVALID, tt.msg)
				if got := f.tasks(); got != "" {
					t.Fatalf("stored %q, want nothing", got)
				}
			})
		}
	})

	t.Run("ErrorGolden", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		w := f.do("POST", "/api/tasks", `{"task_type":"noop","schedule":{"rrule":{"freq":"DAILY"}}}`)
		want(t, w, http.StatusBadRequest)
		golden(t, "error", w.Body.Bytes())
	})
}

func TestEnsureScheduled(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		body := `{"id":"e1","task_type":"noop","schedule":{"interval":"5m"}}`
		w := f.do("POST", "/api/tasks/_ensure_scheduled", body)
		want(t, w, http.StatusOK)
		if got := decode[*deputy.Task](t, w); got.ID != "e1" || got.Schedule.Interval != "5m" {
			t.Fatalf("task = %+v, want e1 every 5m", got)
		}

		// Again: the same task, with its interval updated.
		w = f.do("POST", "/api/tasks/_ensure_scheduled", strings.Replace(body, "5m", "1h", 1))
		want(t, w, http.StatusOK)
		if got := f.get("e1"); got.Schedule.Interval != "1h" || got.Version != 2 {
			t.Fatalf("stored task interval %q version %d, want 1h and 2", got.Schedule.Interval, got.Version)
		}
	})

	t.Run("ErrNoID", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		w := f.do("POST", "/api/tasks/_ensure_scheduled", `{"task_type":"noop"}`)
		wantError(t, w, http.StatusBadRequest, deputy.EINVALID, "id is required")
		if got := f.tasks(); got != "" {
			t.Fatalf("stored %q, want nothing", got)
		}
	})

	t.Run("ErrOtherSpace", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		f.schedule("/s/other/api/tasks", `{"id":"e1","task_type":"noop","schedule":{"interval":"5m"}}`)
		w := f.do("POST", "/api/tasks/_ensure_scheduled",
			`{"id":"e1","task_type":"noop","schedule":{"interval":"1h"}}`)
		wantError(t, w, http.StatusConflict, deputy.ECONFLICT, "already exists")
		if got := f.get("e1"); got.Schedule.Interval != "5m" {
			t.Fatalf("interval = %q, want 5m untouched", got.Schedule.Interval)
		}
	})
}

func TestGet(t *testing.T) {
	t.Parallel()
	f := setup(t, options{})
	f.schedule("/api/tasks", `{"id":"t1","task_type":"noop"}`)
	f.schedule("/s/other/api/tasks", `{"id":"t2","task_type":"noop"}`)

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		w := f.do("GET", "/api/tasks/t1", "")
		want(t, w, http.StatusOK)
		if got := decode[*deputy.Task](t, w); got.ID != "t1" || got.Type != "noop" {
			t.Fatalf("task = %+v, want t1", got)
		}
		w = f.do("GET", "/s/other/api/tasks/t2", "")
		want(t, w, http.StatusOK)
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		t.Parallel()
		wantError(t, f.do("GET", "/api/tasks/nope", ""), http.StatusNotFound, deputy.ENOTFOUND, "nope")
	})

	t.Run("ErrOtherSpace", func(t *testing.T) {
		t.Parallel()
		wantError(t, f.do("GET", "/api/tasks/t2", ""), http.StatusNotFound, deputy.ENOTFOUND, "t2")
		wantError(t, f.do("GET", "/s/other/api/tasks/t1", ""), http.StatusNotFound, deputy.ENOTFOUND,
			"t1")
	})

	t.Run("ErrUnknownParam", func(t *testing.T) {
		t.Parallel()
		wantError(t, f.do("GET", "/api/tasks/t1?x=1", ""), http.StatusBadRequest, deputy.EINVALID,
			`unknown query parameter "x"`)
	})
}

func TestList(t *testing.T) {
	t.Parallel()
	f := setup(t, options{})
	f.schedule("/api/tasks", `{"id":"a","task_type":"noop","run_at":"2026-03-04T05:00:00Z"}`)
	f.schedule("/api/tasks", `{"id":"b","task_type":"check","params":{"url":"http://x"},
		"scope":["alerting"],"run_at":"2026-03-04T06:00:00Z"}`)
	f.schedule("/api/tasks", `{"id":"c","task_type":"noop","enabled":false,
		"run_at":"2026-03-04T07:00:00Z"}`)
	f.schedule("/s/other/api/tasks", `{"id":"d","task_type":"noop"}`)

	for _, tt := range []struct {
		name, query, want string
	}{
		{"All", "", "a,b,c"},
		{"Type", "?task_type=check", "b"},
		{"TypesRepeated", "?task_type=check&task_type=noop", "a,b,c"},
		{"TypesComma", "?task_type=check,nope", "b"},
		{"Status", "?status=idle,running", "a,b,c"},
		{"StatusNone", "?status=running", ""},
		{"Scope", "?scope=alerting", "b"},
		{"Enabled", "?enabled=false", "c"},
		{"Size", "?size=2", "a,b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := f.do("GET", "/api/tasks"+tt.query, "")
			want(t, w, http.StatusOK)
			if got := ids(decode[bulkResult](t, w).Tasks); got != tt.want {
				t.Fatalf("tasks = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("Space", func(t *testing.T) {
		t.Parallel()
		w := f.do("GET", "/s/other/api/tasks", "")
		want(t, w, http.StatusOK)
		if got := ids(decode[bulkResult](t, w).Tasks); got != "d" {
			t.Fatalf("tasks = %q, want d", got)
		}
		w = f.do("GET", "/s/empty/api/tasks", "")
		want(t, w, http.StatusOK)
		golden(t, "list_empty", w.Body.Bytes())
	})

	t.Run("Pages", func(t *testing.T) {
		t.Parallel()
		var got []string
		query := "?size=2"
		for range 3 {
			w := f.do("GET", "/api/tasks"+query, "")
			want(t, w, http.StatusOK)
			page := decode[struct {
				Tasks []*deputy.Task
				Next  string
			}](t, w)
			got = append(got, ids(page.Tasks))
			if page.Next == "" {
				break
			}
			query = "?size=2&after=" + page.Next
		}
		if strings.Join(got, "|") != "a,b|c" {
			t.Fatalf("pages = %q, want a,b then c", got)
		}
	})

	t.Run("Golden", func(t *testing.T) {
		t.Parallel()
		w := f.do("GET", "/api/tasks?task_type=check", "")
		want(t, w, http.StatusOK)
		golden(t, "list", w.Body.Bytes())
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		t.Parallel()
		for query, msg := range map[string]string{
			"?size=0":             "size must be",
			"?size=x":             "size must be",
			"?size=10001":         "size must be",
			"?status=sleeping":    `unknown status "sleeping"`,
			"?enabled=maybe":      `"enabled" must be true or false`,
			"?scope=a&scope=b":    "more than once",
			"?task_typ=noop":      `unknown query parameter "task_typ"`,
			"?after=not-a-cursor": "",
		} {
			w := f.do("GET", "/api/tasks"+query, "")
			if msg == "" {
				// The store decides what a bad cursor is; it must not be a 500.
				if w.Code >= 500 {
					t.Fatalf("%s: status %d: %s", query, w.Code, w.Body)
				}
				continue
			}
			wantError(t, w, http.StatusBadRequest, deputy.EINVALID, msg)
		}
	})
}

func TestAggregate(t *testing.T) {
	t.Parallel()
	f := setup(t, options{})
	f.schedule("/api/tasks", `{"id":"a","task_type":"noop"}`)
	f.schedule("/api/tasks", `{"id":"b","task_type":"noop"}`)
	f.schedule("/api/tasks", `{"id":"c","task_type":"check","params":{"url":"http://x"}}`)
	f.schedule("/s/other/api/tasks", `{"id":"d","task_type":"noop"}`)

	w := f.do("GET", "/api/tasks/_aggregate", "")
	want(t, w, http.StatusOK)
	golden(t, "aggregate", w.Body.Bytes())

	w = f.do("GET", "/api/tasks/_aggregate?task_type=check", "")
	want(t, w, http.StatusOK)
	counts := decode[struct{ Counts []deputy.Count }](t, w).Counts
	if len(counts) != 1 || counts[0].Type != "check" || counts[0].Count != 1 {
		t.Fatalf("counts = %+v, want one check", counts)
	}

	wantError(t, f.do("GET", "/api/tasks/_aggregate?size=1", ""), http.StatusBadRequest,
		deputy.EINVALID, `unknown query parameter "size"`)
}

func TestRemove(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		f.schedule("/api/tasks", `{"id":"t1","task_type":"noop"}`)
		w := f.do("DELETE", "/api/tasks/t1", "")
		want(t, w, http.StatusNoContent)
		if w.Body.Len() != 0 {
			t.Fatalf("body = %q, want none", w.Body)
		}
		if got := f.tasks(); got != "" {
			t.Fatalf("stored %q, want nothing", got)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		wantError(t, f.do("DELETE", "/api/tasks/t1", ""), http.StatusNotFound, deputy.ENOTFOUND, "t1")
		want(t, f.do("DELETE", "/api/tasks/t1?ignore_missing=true", ""), http.StatusNoContent)
		wantError(t, f.do("DELETE", "/api/tasks/t1?ignore_missing=maybe", ""), http.StatusBadRequest,
			deputy.EINVALID, "ignore_missing")
	})

	t.Run("ErrOtherSpace", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		f.schedule("/s/other/api/tasks", `{"id":"t1","task_type":"noop"}`)
		wantError(t, f.do("DELETE", "/api/tasks/t1", ""), http.StatusNotFound, deputy.ENOTFOUND, "t1")
		want(t, f.do("DELETE", "/api/tasks/t1?ignore_missing=true", ""), http.StatusNoContent)
		if got := f.tasks(); got != "t1" {
			t.Fatalf("stored %q, want t1 kept", got)
		}
	})
}

func TestRunSoon(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		f.schedule("/api/tasks", `{"id":"t1","task_type":"noop","run_at":"2030-01-01T00:00:00Z"}`)
		w := f.do("POST", "/api/tasks/t1/_run_soon", "")
		want(t, w, http.StatusOK)
		if got := decode[*deputy.Task](t, w); !got.RunAt.Equal(epoch) {
			t.Fatalf("run_at = %v, want %v", got.RunAt, epoch)
		}
		if got := f.get("t1"); !got.RunAt.Equal(epoch) {
			t.Fatalf("stored run_at = %v, want %v", got.RunAt, epoch)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		f.schedule("/s/other/api/tasks", `{"id":"t1","task_type":"noop"}`)
		wantError(t, f.do("POST", "/api/tasks/nope/_run_soon", ""), http.StatusNotFound,
			deputy.ENOTFOUND, "nope")
		wantError(t, f.do("POST", "/api/tasks/t1/_run_soon", ""), http.StatusNotFound,
			deputy.ENOTFOUND, "t1")
	})

	t.Run("ErrConflict", func(t *testing.T) {
		t.Parallel()
		f := setup(t, options{})
		f.schedule("/api/tasks", `{"id":"t1","task_type":"noop"}`)
		claimed, err := f.db.Claim(t.Context(), deputy.ClaimParams{
			Owner: "node-2", Now: epoch, Types: []string{"noop"}, Budget: 10, Lease: time.Minute,
		})
		if err != nil || len(claimed) != 1 {
			t.Fatalf("claim = %d tasks, %v; want 1", len(claimed), err)
		}
		wantError(t, f.do("POST", "/api/tasks/t1/_run_soon", ""), http.StatusConflict,
			deputy.ECONFLICT, "already running")
	})
}

func TestUnknownRoute(t *testing.T) {
	t.Parallel()
	f := setup(t, options{})
	for _, tt := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/nope", http.StatusNotFound, ""},
		{"GET", "/api/nope", http.StatusNotFound, ""},
		{"GET", "/s/x/api/nope", http.StatusNotFound, ""},
		{"PUT", "/api/tasks", http.StatusMethodNotAllowed, "GET, HEAD, POST"},
		{"GET", "/api/tasks/_bulk_update/x", http.StatusNotFound, ""},
		{"PATCH", "/s/x/api/tasks/t1", http.StatusMethodNotAllowed, "DELETE, GET, HEAD"},
		{"GET", "/api/tasks/t1/_run_soon", http.StatusMethodNotAllowed, "POST"},
	} {
		w := f.do(tt.method, tt.path, "")
		code := deputy.ENOTFOUND
		if tt.status == http.StatusMethodNotAllowed {
			code = deputy.EINVALID
		}
		wantError(t, w, tt.status, code, "")
		if got := w.Header().Get("Allow"); got != tt.allow {
			t.Fatalf("%s %s: Allow = %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
}
