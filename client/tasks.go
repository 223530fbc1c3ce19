package client

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/deputyhq/deputy"
)

// Schedule schedules a task and returns it as stored.
func (c *Client) Schedule(ctx context.Context, nt deputy.NewTask) (*deputy.Task, error) {
	var t deputy.Task
	if err := c.Do(ctx, http.MethodPost, "/api/tasks", nil, nt, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// BulkSchedule schedules tasks. Invalid input fails the whole call; an id
// that exists fails only its task, in the result's Errors.
func (c *Client) BulkSchedule(ctx context.Context, nts []deputy.NewTask) (*BulkResult, error) {
	if nts == nil {
		nts = []deputy.NewTask{}
	}
	body := struct {
		Tasks []deputy.NewTask `json:"tasks"`
	}{nts}
	return c.bulk(ctx, "/api/tasks/_bulk_schedule", body)
}

// EnsureScheduled schedules a task with a fixed id unless it exists, and
// returns the task.
func (c *Client) EnsureScheduled(ctx context.Context, nt deputy.NewTask) (*deputy.Task, error) {
	var t deputy.Task
	if err := c.Do(ctx, http.MethodPost, "/api/tasks/_ensure_scheduled", nil, nt, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// taskPath returns the path of a task, or of one of its actions.
func taskPath(id string, action ...string) string {
	p := "/api/tasks/" + url.PathEscape(id)
	for _, a := range action {
		p += "/" + a
	}
	return p
}

// Get returns a task.
func (c *Client) Get(ctx context.Context, id string) (*deputy.Task, error) {
	var t deputy.Task
	if err := c.Do(ctx, http.MethodGet, taskPath(id), nil, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// ListQuery filters [Client.List], [Client.All] and [Client.Aggregate].
// Zero fields do not filter.
type ListQuery struct {
	// Types and Statuses match tasks of any of their values.
	Types    []string
	Statuses []deputy.Status
	// Scope matches tasks whose scope contains it.
	Scope   string
	Enabled *bool
	// Size is the page size of List; zero means the server's default.
	Size int
	// After is the cursor of the previous page, from [deputy.Page.Next].
	After string
}

// values returns the query parameters of q; paging ones only when paged.
func (q ListQuery) values(paged bool) url.Values {
	v := url.Values{}
	if len(q.Types) > 0 {
		v.Set("task_type", strings.Join(q.Types, ","))
	}
	if len(q.Statuses) > 0 {
		s := make([]string, len(q.Statuses))
		for i, st := range q.Statuses {
			s[i] = string(st)
		}
		v.Set("status", strings.Join(s, ","))
	}
	if q.Scope != "" {
		v.Set("scope", q.Scope)
	}
	if q.Enabled != nil {
		v.Set("enabled", strconv.FormatBool(*q.Enabled))
	}
	if paged && q.Size > 0 {
		v.Set("size", strconv.Itoa(q.Size))
	}
	if paged && q.After != "" {
		v.Set("after", q.After)
	}
	return v
}

// List returns a page of the tasks matching q, ordered by run_at then id.
func (c *Client) List(ctx context.Context, q ListQuery) (*deputy.Page, error) {
	var p struct {
		Tasks []*deputy.Task `json:"tasks"`
		Next  string         `json:"next"`
	}
	if err := c.Do(ctx, http.MethodGet, "/api/tasks", q.values(true), nil, &p); err != nil {
		return nil, err
	}
	return &deputy.Page{Tasks: p.Tasks, Next: p.Next}, nil
}

// All returns every task matching q, fetching pages of q.Size as it goes.
// It stops at the first error, which it yields with a nil task.
func (c *Client) All(ctx context.Context, q ListQuery) iter.Seq2[*deputy.Task, error] {
	return func(yield func(*deputy.Task, error) bool) {
		for {
			p, err := c.List(ctx, q)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, t := range p.Tasks {
				if !yield(t, nil) {
					return
				}
			}
			if p.Next == "" {
				return
			}
			q.After = p.Next
		}
	}
}

// Aggregate counts the enabled tasks matching q by type and status. Size
// and After are ignored.
func (c *Client) Aggregate(ctx context.Context, q ListQuery) ([]deputy.Count, error) {
	var out struct {
		Counts []deputy.Count `json:"counts"`
	}
	err := c.Do(ctx, http.MethodGet, "/api/tasks/_aggregate", q.values(false), nil, &out)
	if err != nil {
		return nil, err
	}
	return out.Counts, nil
}

// Remove removes a task. A missing task is an error with code
// [deputy.ENOTFOUND].
func (c *Client) Remove(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, taskPath(id), nil, nil, nil)
}

// RemoveIfExists removes a task; a missing task is not an error.
func (c *Client) RemoveIfExists(ctx context.Context, id string) error {
	q := url.Values{"ignore_missing": {"true"}}
	return c.Do(ctx, http.MethodDelete, taskPath(id), q, nil, nil)
}

// RunSoon makes an idle task due now. A running task is an error with code
// [deputy.ECONFLICT].
func (c *Client) RunSoon(ctx context.Context, id string) (*deputy.Task, error) {
	var t deputy.Task
	if err := c.Do(ctx, http.MethodPost, taskPath(id, "_run_soon"), nil, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Update is a change made by [Client.BulkUpdate]. Nil fields are left
// alone.
type Update struct {
	Schedule *deputy.Schedule `json:"schedule,omitempty"`
	State    json.RawMessage  `json:"state,omitempty"`
	Params   json.RawMessage  `json:"params,omitempty"`
	Enabled  *bool            `json:"enabled,omitempty"`
	// RegenerateAPIKey replaces the tasks' API keys with keys granted for
	// the caller.
	RegenerateAPIKey bool `json:"regenerate_api_key,omitempty"`
}

// BulkUpdate applies u to tasks.
func (c *Client) BulkUpdate(ctx context.Context, ids []string, u Update) (*BulkResult, error) {
	body := struct {
		IDs []string `json:"ids"`
		Update
	}{nonNil(ids), u}
	return c.bulk(ctx, "/api/tasks/_bulk_update", body)
}

// BulkRemove removes tasks. The result lists the removed ids in Deleted.
func (c *Client) BulkRemove(ctx context.Context, ids []string) (*BulkResult, error) {
	body := struct {
		IDs []string `json:"ids"`
	}{nonNil(ids)}
	return c.bulk(ctx, "/api/tasks/_bulk_delete", body)
}

// BulkEnable enables tasks; with runSoon, idle ones become due now.
func (c *Client) BulkEnable(ctx context.Context, ids []string, runSoon bool) (*BulkResult, error) {
	body := struct {
		IDs     []string `json:"ids"`
		RunSoon bool     `json:"run_soon"`
	}{nonNil(ids), runSoon}
	return c.bulk(ctx, "/api/tasks/_bulk_enable", body)
}

// BulkDisable disables tasks; with clearState, their state is reset to {}.
func (c *Client) BulkDisable(ctx context.Context, ids []string, clearState bool,
) (*BulkResult, error) {
	body := struct {
		IDs        []string `json:"ids"`
		ClearState bool     `json:"clear_state"`
	}{nonNil(ids), clearState}
	return c.bulk(ctx, "/api/tasks/_bulk_disable", body)
}

func nonNil(ids []string) []string {
	if ids == nil {
		return []string{}
	}
	return ids
}

// BulkResult is the outcome of a bulk call.
type BulkResult struct {
	// Tasks are the tasks scheduled or changed.
	Tasks []*deputy.Task
	// Deleted are the ids BulkRemove removed.
	Deleted []string
	// Errors are the ids that failed, each with an [*Error] carrying the
	// status the failure would have on its own.
	Errors []deputy.BulkError
}

// bulk posts a bulk call and converts its answer.
func (c *Client) bulk(ctx context.Context, path string, body any) (*BulkResult, error) {
	var out struct {
		Tasks   []*deputy.Task `json:"tasks"`
		Deleted []string       `json:"deleted"`
		Errors  []struct {
			ID     string `json:"id"`
			Status int    `json:"status"`
			Error  struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"errors"`
	}
	if err := c.Do(ctx, http.MethodPost, path, nil, body, &out); err != nil {
		return nil, err
	}
	res := &BulkResult{Tasks: out.Tasks, Deleted: out.Deleted}
	for _, e := range out.Errors {
		res.Errors = append(res.Errors, deputy.BulkError{ID: e.ID, Err: &Error{
			Status: e.Status,
			Err:    &deputy.Error{Code: e.Error.Code, Message: e.Error.Message},
		}})
	}
	return res, nil
}

// Health returns the server's health report. An unhealthy server answers
// 503 with its report, which Health returns without error: check its
// Status.
func (c *Client) Health(ctx context.Context) (*deputy.Health, error) {
	const path = "/api/task_manager/_health"
	status, b, err := c.call(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return nil, err
	}
	if status == http.StatusOK || status == http.StatusServiceUnavailable {
		var h deputy.Health
		if json.Unmarshal(b, &h) == nil && h.Status != "" {
			return &h, nil
		}
	}
	if status < 200 || status > 299 {
		return nil, responseError(status, b)
	}
	return nil, fmt.Errorf("GET %s: the answer is not a health report", path)
}

// PendingKeys lists up to limit keys queued for invalidation, oldest
// first, without their secrets. Zero means the server's default. It needs
// the admin role when the server authenticates callers.
func (c *Client) PendingKeys(ctx context.Context, limit int) ([]deputy.PendingKey, error) {
	var q url.Values
	if limit > 0 {
		q = url.Values{"size": {strconv.Itoa(limit)}}
	}
	var out struct {
		Keys []struct {
			ID            string     `json:"id"`
			Kind          string     `json:"kind"`
			QueuedAt      time.Time  `json:"queued_at"`
			Attempts      int        `json:"attempts"`
			LastError     string     `json:"last_error"`
			NextAttemptAt *time.Time `json:"next_attempt_at"`
			HoldUntil     *time.Time `json:"hold_until"`
		} `json:"keys"`
	}
	if err := c.Do(ctx, http.MethodGet, "/api/api_keys/_pending", q, nil, &out); err != nil {
		return nil, err
	}
	keys := make([]deputy.PendingKey, len(out.Keys))
	for i, k := range out.Keys {
		keys[i] = deputy.PendingKey{
			ID: k.ID, Kind: k.Kind, QueuedAt: k.QueuedAt, Attempts: k.Attempts,
			LastError: k.LastError, NextAttemptAt: k.NextAttemptAt, HoldUntil: k.HoldUntil,
		}
	}
	return keys, nil
}
