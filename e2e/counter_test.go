package e2e

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// hit is one request that a run of an http task made to the counter, with
// the claim the run was made under.
type hit struct {
	task string
	at   time.Time // arrival

	// The claim, as the task's row held it while the run waited for the
	// answer: the node running it, the time the run was due (the
	// occurrence, for a recurring task), the claim version and attempt.
	owner   string
	due     time.Time
	started time.Time // when the claim was made; zero if the row was not running
	claim   int64
	attempt int
	// late reports a lookup that had to wait for the database: the row may
	// have moved on to a later claim meanwhile.
	late bool
	// lookupErr says why the claim could not be read, when it could not:
	// "gone" for a task removed while it ran.
	lookupErr string
}

// counter is the HTTP server that every run calls. It records each request
// with the claim read from the database, then answers after workTime so
// that runs overlap as real work would.
type counter struct {
	srv *httptest.Server
	db  *pgxpool.Pool

	mu   sync.Mutex
	hits []hit // guarded by mu
}

// newCounter starts a counter reading claims from db, closed when tb ends.
func newCounter(tb testing.TB, db *pgxpool.Pool) *counter {
	c := &counter{db: db}
	c.srv = httptest.NewServer(c)
	tb.Cleanup(c.srv.Close)
	return c
}

// url returns the URL the runs of a task call.
func (c *counter) url(task string) string {
	return c.srv.URL + "/hit?task=" + url.QueryEscape(task)
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := hit{task: r.URL.Query().Get("task"), at: time.Now()}
	if h.task == "" || r.Method != http.MethodPost {
		http.Error(w, "want POST /hit?task=<id>", http.StatusBadRequest)
		return
	}
	// NB: the run waits for this answer, so its claim cannot end before
	// the lookup, and the row shows the claim the run was made under. The
	// lookup outlives a caller that dies: its run happened all the same.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	c.lookup(ctx, &h)
	c.mu.Lock()
	c.hits = append(c.hits, h)
	c.mu.Unlock()

	// Simulated work.
	select {
	case <-time.After(workTime):
	case <-r.Context().Done():
	}
	w.WriteHeader(http.StatusNoContent)
}

// lookup reads the claim of h's task, retrying while the database is
// unreachable (during a restart) until ctx is done.
func (c *counter) lookup(ctx context.Context, h *hit) {
	for {
		var started *time.Time
		err := c.db.QueryRow(ctx, `
SELECT owner_id, scheduled_at, started_at, claim_version, attempts FROM tasks WHERE id = $1`,
			h.task).Scan(&h.owner, &h.due, &started, &h.claim, &h.attempt)
		switch {
		case err == nil:
			h.lookupErr = ""
			if started != nil {
				h.started = *started
			}
			return
		case errors.Is(err, pgx.ErrNoRows):
			h.lookupErr = "gone"
			return
		}
		h.lookupErr, h.late = err.Error(), true
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// count returns how many requests arrived.
func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.hits)
}

// called counts the claims, by task id, whose runs have called.
func (c *counter) called(claims map[string]int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, h := range c.hits {
		if claim, ok := claims[h.task]; ok && h.claim == claim && h.lookupErr == "" {
			n++
		}
	}
	return n
}

// byTask returns the requests by task, in order of arrival.
func (c *counter) byTask() map[string][]hit {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string][]hit{}
	for _, h := range c.hits {
		m[h.task] = append(m[h.task], h)
	}
	return m
}
