package e2e

import (
	"fmt"
	"testing"
	"time"
)

// NB: the scenarios run one after another, not in parallel: each loads the
// machine with three nodes and thousands of runs, and their timing checks
// (runs a second, prompt failover) need the machine to themselves. Go runs
// them in the order of this file, so the restarts run last.

// TestCluster_Normal runs the load on three nodes: every one-off task runs
// exactly once, every occurrence of a recurring task exactly once.
func TestCluster_Normal(t *testing.T) {
	// The nodes migrate the fresh database at once as they start: the
	// migration lock makes them take turns.
	c := newCluster(t, "normal", clusterOptions{server: serverURL(t)})
	c.schedule()
	c.waitUntil(loadWindow)
	c.removeRecurring()
	c.drain(20 * time.Second)
	c.stopNodes()
	c.checkLogs()
	ty := c.check(rules{})
	c.checkShares(ty)
	c.report(ty)
}

// TestCluster_NodeKilled kills a node with SIGKILL in the middle of the
// load: the tasks it held run again on the others within the node TTL and
// a few seconds, and no other task runs twice.
func TestCluster_NodeKilled(t *testing.T) {
	c := newCluster(t, "sigkill", clusterOptions{server: serverURL(t), migrateFirst: true})
	c.schedule()
	c.waitUntil(10 * time.Second)
	k := c.kill(c.nodes[1])
	c.checkFailover(k)
	c.waitUntil(loadWindow)
	c.removeRecurring()
	c.drain(20 * time.Second)
	c.stopNodes()
	c.checkLogs()

	// A held recurring task misses the occurrences due until its release.
	missed := int((nodeTTL+heartbeat)/interval) + 2
	ty := c.check(rules{rerunOK: k.held, missOK: func(id string) int {
		if k.held[id] {
			return missed
		}
		return 0
	}})
	c.report(ty)
}

// TestCluster_PostgresRestart restarts PostgreSQL in the middle of the
// load: the nodes back off and carry on, every one-off task runs, the
// recurring tasks resume, and only tasks running at the restart may run
// twice.
func TestCluster_PostgresRestart(t *testing.T) {
	testRestart(t, "pg-restart", 0)
}

// TestCluster_PostgresOutage is TestCluster_PostgresRestart with the server
// down for longer than the node TTL, as a slow restart or a failover would
// have it: the nodes cannot heartbeat meanwhile, yet none may take over
// the tasks the others claim once the server is back.
func TestCluster_PostgresOutage(t *testing.T) {
	testRestart(t, "pg-outage", nodeTTL+3*time.Second)
}

// testRestart runs the load on a private cluster and restarts it in the
// middle, keeping it down for down.
func testRestart(t *testing.T, name string, down time.Duration) {
	serverURL(t) // the same gate as the other scenarios
	pg := startPGCluster(t)
	c := newCluster(t, name, clusterOptions{server: pg.url, migrateFirst: true})
	c.schedule()
	c.waitUntil(10 * time.Second)
	rs := c.restartPostgres(pg, down)
	c.waitUntil(loadWindow)
	c.removeRecurring()
	c.drain(30 * time.Second)
	c.checkResumed(rs)
	c.stopNodes()
	c.checkLogs()

	// A recurring task misses the occurrences due while the server is down,
	// and as many again at most while the nodes' claim and write loops,
	// backing off, sleep after it is back: their backoff doubles up to 10s.
	outage := rs.back.Sub(rs.down)
	missed := int((outage+min(outage, 10*time.Second))/interval) + 2
	ty := c.check(rules{rerunOK: rs.running, caught: rs.caught,
		missOK: func(string) int { return missed }})
	c.report(ty)
}

// report prints a scenario's figures. go test shows a passing package's
// output only with -v or when run in its directory.
func (c *cluster) report(ty *tally) {
	s := ty.summary(c.name)
	c.t.Log(s)
	fmt.Println(s)
}
