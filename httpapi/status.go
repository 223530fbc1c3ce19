package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/deputyhq/deputy"
)

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request, _ *call) error {
	if err := onlyParams(r.URL.Query()); err != nil {
		return err
	}
	h := s.m.Health(r.Context())
	status := http.StatusOK
	if h.Status == "error" {
		status = http.StatusServiceUnavailable
	}
	s.writeJSON(w, r, status, h)
	return nil
}

// pendingKey is the JSON form of a [deputy.PendingKey]. It has no secret.
type pendingKey struct {
	ID            string     `json:"id"`
	Kind          string     `json:"kind"`
	QueuedAt      time.Time  `json:"queued_at"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	HoldUntil     *time.Time `json:"hold_until"`
}

// defaultPendingKeys is how many pending keys are listed without a size.
const defaultPendingKeys = 1000

func (s *Server) handlePendingKeys(w http.ResponseWriter, r *http.Request, c *call) error {
	if c.caller != nil && !c.admin {
		return deputy.Errorf(deputy.EFORBIDDEN, "listing pending api keys is for admins only")
	}
	q := r.URL.Query()
	if err := onlyParams(q, "size"); err != nil {
		return err
	}
	limit := defaultPendingKeys
	if size, err := oneParam(q, "size"); err != nil {
		return err
	} else if size != "" {
		if limit, err = strconv.Atoi(size); err != nil || limit < 1 || limit > maxPageSize {
			return deputy.Errorf(deputy.EINVALID, "size must be a number from 1 to %d", maxPageSize)
		}
	}
	keys, err := s.m.PendingKeys(r.Context(), limit)
	if err != nil {
		return err
	}
	out := make([]pendingKey, 0, len(keys))
	for _, k := range keys {
		out = append(out, pendingKey{
			ID: k.ID, Kind: k.Kind, QueuedAt: k.QueuedAt, Attempts: k.Attempts,
			LastError: k.LastError, NextAttemptAt: k.NextAttemptAt, HoldUntil: k.HoldUntil,
		})
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		Keys []pendingKey `json:"keys"`
	}{out})
	return nil
}
