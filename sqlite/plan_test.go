package sqlite

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
)

// mustOpen opens a store on a fresh file and closes it when t ends.
func mustOpen(t *testing.T) *DB {
	t.Helper()
	db, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "deputy.db")})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// explain returns the query plan of q, one step a line.
func explain(t *testing.T, db *DB, q string, args ...any) string {
	t.Helper()
	rows, err := db.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatalf("explain %s: %v", firstLine(q), err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var (
			id, parent, unused int
			detail             string
		)
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatalf("explain %s: %v", firstLine(q), err)
		}
		b.WriteString(detail + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("explain %s: %v", firstLine(q), err)
	}
	return b.String()
}

// TestPlans checks that the hot and the growing queries use indexes: no full
// scan of tasks or of the key queue, and no sort.
func TestPlans(t *testing.T) {
	t.Parallel()
	db := mustOpen(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	fetch, fetchArgs, _, err := fetchQuery(deputy.Query{})
	if err != nil {
		t.Fatalf("fetchQuery: %v", err)
	}
	cursor := encodeCursor(&deputy.Task{ID: "a", RunAt: now})
	fetchNext, fetchNextArgs, _, err := fetchQuery(deputy.Query{After: cursor, Enabled: new(true)})
	if err != nil {
		t.Fatalf("fetchQuery: %v", err)
	}
	pending, pendingArgs := pendingQuery(deputy.PendingQuery{Due: true, Now: now, QueuedBefore: now,
		Kinds: []string{"es"}, Limit: 10})

	tests := []struct {
		name  string
		query string
		args  []any
		want  []string
	}{
		{"NextPriority", qNextPriority, nil, []string{
			"SEARCH tasks USING INDEX tasks_claim (eff_priority<?)"}},
		{"Candidates", qCandidates, nil, []string{
			"SEARCH tasks USING INDEX tasks_claim (eff_priority=? AND due_at>? AND due_at<?)"}},
		{"Claim", qClaim, nil, []string{
			"SEARCH tasks USING COVERING INDEX sqlite_autoindex_tasks_1 (id=?)"}},
		{"Complete", qComplete, nil, []string{
			"SEARCH tasks USING INDEX sqlite_autoindex_tasks_1 (id=?)"}},
		{"CompleteDelete", qCompleteDelete, nil, []string{
			"SEARCH tasks USING INDEX sqlite_autoindex_tasks_1 (id=?)"}},
		{"TaskKeys", qTaskKeys, nil, []string{"SEARCH task_keys USING PRIMARY KEY (task_id=?)"}},
		{"Fetch", fetch, fetchArgs, []string{"SCAN tasks USING INDEX tasks_run_at"}},
		{"FetchNext", fetchNext, fetchNextArgs, []string{
			"SEARCH tasks USING INDEX tasks_run_at ((run_at,id)>(?,?))"}},
		{"PendingKeys", pending, pendingArgs, []string{
			"SEARCH q USING INDEX api_key_invalidations_queued (queued_at<?)",
			"SEARCH k USING COVERING INDEX task_keys_key (kind=? AND key_id=?)"}},
		{"QueuedKey", qQueuedKey, nil, []string{
			"SEARCH api_key_invalidations USING INDEX api_key_invalidations_key " +
				"(kind=? AND key_id=?)"}},
		{"UnusedKeys", qDeleteUnusedKeys, nil, []string{
			"SEARCH api_keys USING INDEX api_keys_unused (granted_at<?)"}},
	}
	for _, tt := range tests {
		if tt.args == nil {
			tt.args = make([]any, strings.Count(tt.query, "?"))
		}
		plan := explain(t, db, tt.query, tt.args...)
		for _, want := range tt.want {
			if !strings.Contains(plan, want) {
				t.Errorf("%s: plan lacks %q:\n%s", tt.name, want, plan)
			}
		}
		if strings.Contains(plan, "TEMP B-TREE") || strings.Contains(plan, "SCAN q") ||
			(strings.Contains(plan, "SCAN tasks") && tt.name != "Fetch") {
			t.Errorf("%s: plan scans or sorts:\n%s", tt.name, plan)
		}
	}
}

// TestOpen_Pragmas checks the connection settings of the writer and of the
// readers.
func TestOpen_Pragmas(t *testing.T) {
	t.Parallel()
	db := mustOpen(t)
	tests := []struct {
		conn   string
		pragma string
		want   string
	}{
		{"writer", "journal_mode", "wal"},
		{"writer", "synchronous", "1"},
		{"writer", "foreign_keys", "1"},
		{"writer", "busy_timeout", "5000"},
		{"writer", "query_only", "0"},
		{"reader", "journal_mode", "wal"},
		{"reader", "foreign_keys", "1"},
		{"reader", "busy_timeout", "5000"},
		{"reader", "query_only", "1"},
	}
	for _, tt := range tests {
		conn := db.w
		if tt.conn == "reader" {
			conn = db.r
		}
		var got string
		if err := conn.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Fatalf("%s: PRAGMA %s: %v", tt.conn, tt.pragma, err)
		}
		if got != tt.want {
			t.Errorf("%s: PRAGMA %s = %s, want %s", tt.conn, tt.pragma, got, tt.want)
		}
	}
}
