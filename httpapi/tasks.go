package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/deputyhq/deputy"
)

// newTask is the JSON form of [deputy.NewTask]. It reads run_at itself so
// that a value that is not a time is reported with the field's name.
type newTask struct {
	deputy.NewTask
	RunAt *runAt `json:"run_at,omitempty"`
}

// task returns the new task, in c's space.
func (nt *newTask) task(c *call) (deputy.NewTask, error) {
	t := nt.NewTask
	if nt.RunAt != nil {
		at := time.Time(*nt.RunAt)
		t.RunAt = &at
	}
	switch t.SpaceID {
	case "":
		t.SpaceID = c.space
	case c.space:
	default:
		return t, deputy.Errorf(deputy.EINVALID,
			"space_id %q differs from the space of the route, %q", truncate(t.SpaceID), c.space)
	}
	return t, nil
}

func (s *Server) handleSchedule(w http.ResponseWriter, r *http.Request, c *call) error {
	var req newTask
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	nt, err := req.task(c)
	if err != nil {
		return err
	}
	t, err := s.m.Schedule(r.Context(), nt, c.opts())
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusCreated, t)
	return nil
}

func (s *Server) handleEnsureScheduled(w http.ResponseWriter, r *http.Request, c *call) error {
	var req newTask
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	nt, err := req.task(c)
	if err != nil {
		return err
	}
	if nt.ID == "" {
		return deputy.Errorf(deputy.EINVALID, "id is required")
	}

	// An id is global: one taken by a task the caller cannot see is a
	// conflict, as it is for Schedule, and that task is left alone.
	// TODO(deputy): the check and the write are not atomic; a task removed
	// and re-created by someone else in between would be updated. Fixing it
	// needs an owner condition in Manager.EnsureScheduled.
	existing, err := s.m.Get(r.Context(), nt.ID)
	switch {
	case err == nil && !c.sees(existing):
		return deputy.Errorf(deputy.ECONFLICT, "task %q already exists", nt.ID)
	case err != nil && deputy.ErrorCode(err) != deputy.ENOTFOUND:
		return err
	}
	t, err := s.m.EnsureScheduled(r.Context(), nt, c.opts())
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, t)
	return nil
}

// visibleTask returns the task id if c sees it, and ENOTFOUND otherwise, so
// that the tasks of other spaces and users are not disclosed.
func (s *Server) visibleTask(r *http.Request, c *call, id string) (*deputy.Task, error) {
	t, err := s.m.Get(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if err := c.mustSee(t); err != nil {
		return nil, err
	}
	return t, nil
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	t, err := s.visibleTask(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, t)
	return nil
}

func (s *Server) handleRemove(w http.ResponseWriter, r *http.Request, c *call) error {
	q := r.URL.Query()
	if err := onlyParams(q, "ignore_missing"); err != nil {
		return err
	}
	ignoreMissing, err := boolParam(q, "ignore_missing")
	if err != nil {
		return err
	}
	id := r.PathValue("id")

	// TODO(deputy): the visibility check and the removal are not atomic; a
	// task removed and re-created by another user in between would be
	// removed. Fixing it needs an owner condition in Manager.Remove.
	_, err = s.visibleTask(r, c, id)
	if err == nil {
		err = s.m.Remove(r.Context(), id)
	}
	if err != nil && !(ignoreMissing && deputy.ErrorCode(err) == deputy.ENOTFOUND) {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleRunSoon(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("id")
	if _, err := s.visibleTask(r, c, id); err != nil {
		return err
	}
	t, err := s.m.RunSoon(r.Context(), id)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, t)
	return nil
}

// listResponse is a page of tasks.
type listResponse struct {
	Tasks []*deputy.Task `json:"tasks"`
	Next  string         `json:"next"`
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request, c *call) error {
	q, err := parseQuery(r.URL.Query(), true)
	if err != nil {
		return err
	}
	page, err := s.m.Fetch(r.Context(), c.scope(q))
	if err != nil {
		return err
	}
	resp := listResponse{Tasks: page.Tasks, Next: page.Next}
	if resp.Tasks == nil {
		resp.Tasks = []*deputy.Task{}
	}
	s.writeJSON(w, r, http.StatusOK, resp)
	return nil
}

func (s *Server) handleAggregate(w http.ResponseWriter, r *http.Request, c *call) error {
	q, err := parseQuery(r.URL.Query(), false)
	if err != nil {
		return err
	}
	counts, err := s.m.Aggregate(r.Context(), c.scope(q))
	if err != nil {
		return err
	}
	if counts == nil {
		counts = []deputy.Count{}
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		Counts []deputy.Count `json:"counts"`
	}{counts})
	return nil
}

// maxPageSize bounds the size parameter of list calls.
const maxPageSize = 10000

// parseQuery reads the filters of the list and aggregate routes, and for
// lists the paging parameters. task_type and status may repeat or hold
// comma-separated values.
func parseQuery(v url.Values, paged bool) (deputy.Query, error) {
	allowed := []string{"task_type", "status", "scope", "enabled"}
	if paged {
		allowed = append(allowed, "size", "after")
	}
	var q deputy.Query
	if err := onlyParams(v, allowed...); err != nil {
		return q, err
	}
	q.Types = listParam(v, "task_type")
	for _, st := range listParam(v, "status") {
		if !deputy.Status(st).Valid() {
			return q, deputy.Errorf(deputy.EINVALID, "unknown status %q", truncate(st))
		}
		q.Statuses = append(q.Statuses, deputy.Status(st))
	}
	var err error
	if q.Scope, err = oneParam(v, "scope"); err != nil {
		return q, err
	}
	if _, ok := v["enabled"]; ok {
		enabled, err := boolParam(v, "enabled")
		if err != nil {
			return q, err
		}
		q.Enabled = &enabled
	}
	if !paged {
		return q, nil
	}
	if q.After, err = oneParam(v, "after"); err != nil {
		return q, err
	}
	size, err := oneParam(v, "size")
	if err != nil || size == "" {
		return q, err
	}
	if q.Size, err = strconv.Atoi(size); err != nil || q.Size < 1 || q.Size > maxPageSize {
		return q, deputy.Errorf(deputy.EINVALID, "size must be a number from 1 to %d", maxPageSize)
	}
	return q, nil
}

// onlyParams rejects query parameters other than the allowed ones, so that
// a misspelt filter is not silently ignored.
func onlyParams(v url.Values, allowed ...string) error {
	for k := range v {
		if !slices.Contains(allowed, k) {
			return deputy.Errorf(deputy.EINVALID, "unknown query parameter %q", truncate(k))
		}
	}
	return nil
}

// listParam returns the values of a parameter that may repeat or hold
// comma-separated values.
func listParam(v url.Values, name string) []string {
	var out []string
	for _, s := range v[name] {
		for part := range strings.SplitSeq(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

// oneParam returns the value of a parameter given at most once.
func oneParam(v url.Values, name string) (string, error) {
	if len(v[name]) > 1 {
		return "", deputy.Errorf(deputy.EINVALID,
			"query parameter %q is given more than once", name)
	}
	return v.Get(name), nil
}

// boolParam reads a boolean parameter; absent means false.
func boolParam(v url.Values, name string) (bool, error) {
	if _, ok := v[name]; !ok {
		return false, nil
	}
	s, err := oneParam(v, name)
	if err != nil {
		return false, err
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, deputy.Errorf(deputy.EINVALID,
			"query parameter %q must be true or false", name)
	}
	return b, nil
}
