package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/client"
)

// Settings of the nodes. Heartbeats and the node TTL are short so that the
// tasks of a dead node are released promptly.
const (
	nodeCount    = 3
	pollInterval = 200 * time.Millisecond
	heartbeat    = 500 * time.Millisecond
	nodeTTL      = 3 * time.Second
	capacity     = 40
)

// The load of every scenario: one-off tasks, some due at once and the rest
// falling due evenly while the recurring tasks run, so that the nodes hold
// tasks whenever a scenario disrupts them.
const (
	oneOffCount    = 10000
	burstCount     = 2000
	spreadOver     = 20 * time.Second
	recurringCount = 200
	interval       = time.Second
	// loadWindow is how long after scheduling the recurring tasks are
	// removed.
	loadWindow = 30 * time.Second
	bulkChunk  = 1000
	workTime   = 20 * time.Millisecond
	// recurringPriority is above the one-off tasks' normal priority.
	recurringPriority = deputy.PriorityNormal + 10
)

// cluster is one scenario's database, counter and nodes.
type cluster struct {
	t       *testing.T
	name    string
	db      *pgxpool.Pool
	counter *counter
	nodes   []*node
	clients []*client.Client

	oneOff    []string
	recurring []string
	start     time.Time // when scheduling began
	removed   time.Time // when the recurring tasks were removed
}

// clusterOptions configure [newCluster].
type clusterOptions struct {
	// server is the PostgreSQL server the scenario's database is made on.
	server string
	// migrateFirst runs `deputy migrate` before the nodes start, with
	// --no-migrate; otherwise the three nodes migrate at once as they start.
	migrateFirst bool
}

// newCluster creates a database on opts.server and starts the counter and
// three nodes on it. Everything is torn down when t ends; on failure the
// node logs are kept and their tails printed.
func newCluster(t *testing.T, name string, opts clusterOptions) *cluster {
	t.Helper()
	logDir, err := os.MkdirTemp("", "deputy-e2e-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs kept in %s", logDir)
			return
		}
		os.RemoveAll(logDir)
	})
	dbURL := newDatabase(t, opts.server)
	if opts.migrateFirst {
		if err := migrate(dbURL); err != nil {
			t.Fatal(err)
		}
	}
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 16
	db, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)

	c := &cluster{t: t, name: name, db: db, counter: newCounter(t, db)}
	c.startNodes(dbURL, logDir, !opts.migrateFirst)
	return c
}

// startNodes starts the nodes at once, and registers their teardown.
func (c *cluster) startNodes(dbURL, logDir string, migrate bool) {
	t := c.t
	c.nodes = make([]*node, nodeCount)
	errs := make([]error, nodeCount)
	var wg sync.WaitGroup
	for i := range nodeCount {
		wg.Go(func() {
			c.nodes[i], errs[i] = startNode(nodeConfig{
				id: fmt.Sprintf("node-%d", i+1), dbURL: dbURL, logDir: logDir, migrate: migrate,
			})
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n == nil {
				continue
			}
			if n.alive() {
				n.kill()
			}
			if t.Failed() {
				t.Logf("last lines of %s:\n%s", n.id, n.log.tail(40))
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.nodes {
		cl, err := client.New(client.Config{BaseURL: "http://" + n.addr})
		if err != nil {
			t.Fatal(err)
		}
		c.clients = append(c.clients, cl)
	}
}

// schedule schedules the recurring tasks, then the one-off tasks in bulk
// calls spread over the nodes. The recurring tasks have a higher priority,
// as periodic checks would: they are claimed before the backlog of one-off
// tasks, so that their occurrences run on time even on a busy machine, and
// the claims walk two priorities.
func (c *cluster) schedule() {
	c.start = time.Now()
	prio := recurringPriority
	var nts []deputy.NewTask
	for i := range recurringCount {
		id := fmt.Sprintf("rec-%03d", i)
		c.recurring = append(c.recurring, id)
		nt := c.httpTask(id, nil, &deputy.Schedule{Interval: "1s"})
		nt.Priority = &prio
		nts = append(nts, nt)
	}
	c.bulkSchedule(0, nts)

	for from := 0; from < oneOffCount; from += bulkChunk {
		nts = nts[:0]
		for i := from; i < min(from+bulkChunk, oneOffCount); i++ {
			id := fmt.Sprintf("once-%05d", i)
			c.oneOff = append(c.oneOff, id)
			var runAt *time.Time
			if i >= burstCount {
				at := c.oneOffDue(i)
				runAt = &at
			}
			nts = append(nts, c.httpTask(id, runAt, nil))
		}
		c.bulkSchedule(from/bulkChunk%nodeCount, nts)
	}
	c.t.Logf("%s: scheduled %d recurring and %d one-off tasks in %s", c.name, recurringCount,
		oneOffCount, time.Since(c.start).Round(time.Millisecond))
}

// oneOffDue returns when the i-th one-off task falls due.
func (c *cluster) oneOffDue(i int) time.Time {
	if i < burstCount {
		return c.start
	}
	spread := spreadOver / time.Duration(oneOffCount-burstCount)
	return c.start.Add(time.Duration(i-burstCount) * spread)
}

// httpTask returns a task whose runs POST to the counter.
func (c *cluster) httpTask(id string, runAt *time.Time, s *deputy.Schedule) deputy.NewTask {
	params, err := json.Marshal(map[string]string{"method": "POST", "url": c.counter.url(id)})
	if err != nil {
		c.t.Fatal(err)
	}
	return deputy.NewTask{ID: id, Type: "http", Params: params, RunAt: runAt, Schedule: s}
}

// bulkSchedule schedules tasks through node i's API; every one must be
// stored.
func (c *cluster) bulkSchedule(i int, nts []deputy.NewTask) {
	res, err := c.clients[i].BulkSchedule(c.t.Context(), nts)
	if err != nil {
		c.t.Fatalf("bulk schedule on %s: %v", c.nodes[i].id, err)
	}
	if len(res.Errors) > 0 || len(res.Tasks) != len(nts) {
		c.t.Fatalf("bulk schedule on %s: %d of %d stored, errors: %v", c.nodes[i].id,
			len(res.Tasks), len(nts), res.Errors)
	}
}

// waitUntil waits until d after scheduling began: the load runs meanwhile.
func (c *cluster) waitUntil(d time.Duration) {
	select {
	case <-time.After(time.Until(c.start.Add(d))):
	case <-c.t.Context().Done():
	}
}

// removeRecurring removes the recurring tasks through the API of a node
// still running, retrying while the database is unavailable.
func (c *cluster) removeRecurring() {
	t := c.t
	deadline := time.Now().Add(30 * time.Second)
	for {
		i := slices.IndexFunc(c.nodes, (*node).alive)
		if i < 0 {
			t.Fatal("remove the recurring tasks: no node is running")
		}
		res, err := c.clients[i].BulkRemove(t.Context(), c.recurring)
		if err == nil {
			c.removed = time.Now()
			if len(res.Deleted) != len(c.recurring) {
				t.Errorf("removed %d of %d recurring tasks: %v", len(res.Deleted),
					len(c.recurring), res.Errors)
			}
			return
		}
		if deputy.ErrorCode(err) != deputy.EUNAVAILABLE || time.Now().After(deadline) {
			t.Fatalf("remove the recurring tasks: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // back off
	}
}

// drain waits until every one-off task ran and the tasks table is empty:
// one-off tasks are deleted when they finish, and the recurring ones were
// removed. Then it waits for the counter to stay quiet for a second, so
// that a late duplicate would be seen.
func (c *cluster) drain(timeout time.Duration) {
	t := c.t
	deadline := time.Now().Add(timeout)
	for {
		left := c.tasksLeft()
		unrun := c.unrun()
		if left == 0 && len(unrun) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s after removing the recurring tasks: %d tasks left in the table, "+
				"%d one-off tasks never ran (first: %v)\n%s", timeout, left, len(unrun),
				unrun[:min(len(unrun), 10)], c.describeLeft())
			return
		}
		time.Sleep(100 * time.Millisecond) // poll
	}
	quiet := time.Now().Add(10 * time.Second)
	for last := c.counter.count(); time.Now().Before(quiet); {
		time.Sleep(time.Second) // observation window
		n := c.counter.count()
		if n == last {
			return
		}
		last = n
	}
}

// tasksLeft counts the rows of the tasks table, -1 when it cannot.
func (c *cluster) tasksLeft() int {
	var n int
	if err := c.db.QueryRow(c.t.Context(), "SELECT count(*) FROM tasks").Scan(&n); err != nil {
		return -1
	}
	return n
}

// unrun lists the one-off tasks the counter has not seen.
func (c *cluster) unrun() []string {
	hits := c.counter.byTask()
	var out []string
	for _, id := range c.oneOff {
		if len(hits[id]) == 0 {
			out = append(out, id)
		}
	}
	return out
}

// describeLeft describes the first rows left in the tasks table.
func (c *cluster) describeLeft() string {
	rows, err := c.db.Query(c.t.Context(), `
SELECT id, status, owner_id, run_at, retry_at, attempts FROM tasks ORDER BY id LIMIT 20`)
	if err != nil {
		return "read tasks: " + err.Error()
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var (
			id, status, owner string
			runAt             time.Time
			retryAt           *time.Time
			attempts          int
		)
		if err := rows.Scan(&id, &status, &owner, &runAt, &retryAt, &attempts); err != nil {
			return "read tasks: " + err.Error()
		}
		fmt.Fprintf(&b, "  %s: status %s, owner %q, run_at %s, retry_at %v, attempts %d\n",
			id, status, owner, runAt.Format(time.StampMilli), retryAt, attempts)
	}
	return b.String()
}

// running returns the tasks running on any node under claims made before
// the given time, as the database says.
func (c *cluster) running(ctx context.Context, before time.Time) ([]string, error) {
	rows, err := c.db.Query(ctx, `
SELECT id FROM tasks WHERE status IN ('running', 'claiming') AND started_at < $1`, before)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// claimsOf returns the claim versions of the tasks a node runs, by id.
func (c *cluster) claimsOf(ctx context.Context, owner string) (map[string]int64, error) {
	rows, err := c.db.Query(ctx, `
SELECT id, claim_version FROM tasks WHERE status IN ('running', 'claiming') AND owner_id = $1`,
		owner)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	claims := map[string]int64{}
	for rows.Next() {
		var (
			id    string
			claim int64
		)
		if err := rows.Scan(&id, &claim); err != nil {
			return nil, err
		}
		claims[id] = claim
	}
	return claims, rows.Err()
}

// stopNodes stops the nodes still running with SIGTERM: each must exit
// cleanly.
func (c *cluster) stopNodes() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if !n.alive() {
			continue
		}
		wg.Go(func() {
			if err := n.stop(45 * time.Second); err != nil {
				c.t.Errorf("%v\n%s", err, n.log.tail(20))
			}
		})
	}
	wg.Wait()
}

// checkLogs fails the test for every node that logged a panic, a crash or a
// data race, and logs the warnings and errors of each.
func (c *cluster) checkLogs() {
	for _, n := range c.nodes {
		if lines := n.log.crashes(); len(lines) > 0 {
			c.t.Errorf("%s logged a panic, crash or data race:\n%s", n.id,
				strings.Join(lines[:min(len(lines), 20)], "\n"))
		}
		counts := n.log.levelCounts()
		var parts []string
		for _, msg := range slices.Sorted(maps.Keys(counts)) {
			parts = append(parts, fmt.Sprintf("%s ×%d", msg, counts[msg]))
		}
		if len(parts) > 0 {
			c.t.Logf("%s logged: %s", n.id, strings.Join(parts, "; "))
		}
	}
}

// warnings counts the WARN and ERROR lines of a node.
func warnings(n *node) int {
	total := 0
	for _, v := range n.log.levelCounts() {
		total += v
	}
	return total
}
