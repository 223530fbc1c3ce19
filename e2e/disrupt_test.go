package e2e

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// killing is what became of a node killed with SIGKILL.
type killing struct {
	node *node
	at   time.Time
	// held are the tasks it ran when it died, as the database said until
	// the other nodes released them.
	held map[string]bool
	// released is how long after the kill its tasks were released and its
	// heartbeat row deleted.
	released time.Duration
}

// kill kills n with SIGKILL once it runs a few tasks, one of which has
// called the counter (or after 5s), and follows the tasks it held until the
// other nodes release them. The task that called dies with its run done but
// not recorded: it must run again, the one rerun exactly-once excuses.
func (c *cluster) kill(n *node) *killing {
	t, ctx := c.t, c.t.Context()
	// Kill it holding five tasks or more, one of them started, or, on a
	// machine too busy for that within 5 s, holding at least one.
	start := time.Now()
	for deadline := start.Add(35 * time.Second); time.Now().Before(deadline); {
		claims, err := c.claimsOf(ctx, n.id)
		want := 5
		if time.Since(start) > 5*time.Second {
			want = 1
		}
		if err == nil && len(claims) >= want && c.counter.called(claims) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond) // poll
	}
	k := &killing{node: n, at: time.Now(), held: map[string]bool{}}
	n.kill()

	// A claim in flight at the kill may still commit, so the tasks are read
	// until the release, which forgets the node as well.
	deadline := k.at.Add(nodeTTL + 10*time.Second)
	for {
		claims, err := c.claimsOf(ctx, n.id)
		if err != nil {
			t.Fatalf("read the tasks of the killed node: %v", err)
		}
		for id := range claims {
			k.held[id] = true
		}
		var alive int
		if err := c.db.QueryRow(ctx, "SELECT count(*) FROM nodes WHERE id = $1",
			n.id).Scan(&alive); err != nil {
			t.Fatalf("read the nodes: %v", err)
		}
		if len(claims) == 0 && alive == 0 {
			k.released = time.Since(k.at)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s after killing %s, it still holds %d tasks (heartbeat row: %v)",
				time.Since(k.at).Round(time.Millisecond), n.id, len(claims), alive == 1)
			break
		}
		time.Sleep(20 * time.Millisecond) // poll
	}
	t.Logf("killed %s holding %d tasks; released after %s", n.id, len(k.held),
		k.released.Round(time.Millisecond))
	return k
}

// checkFailover checks that the killed node's tasks were released promptly
// and ran again on the other nodes, and that every one-off task due at the
// kill ran within the node TTL and ten seconds.
func (c *cluster) checkFailover(k *killing) {
	t := c.t
	if limit := nodeTTL + heartbeat + 2*time.Second; k.released > limit {
		t.Errorf("the tasks of %s were released %s after its death, want within %s",
			k.node.id, k.released.Round(time.Millisecond), limit)
	}
	if len(k.held) == 0 {
		t.Errorf("%s held no task when it was killed: nothing to fail over", k.node.id)
	}

	// Give the others the TTL and ten seconds, then look.
	limit := k.at.Add(nodeTTL + 10*time.Second)
	select {
	case <-time.After(time.Until(limit)):
	case <-t.Context().Done():
		return
	}
	hits := c.counter.byTask()
	var slowest time.Duration
	for _, id := range slices.Sorted(maps.Keys(k.held)) {
		i := slices.IndexFunc(hits[id], func(h hit) bool {
			return h.at.After(k.at) && h.owner != k.node.id && h.lookupErr == ""
		})
		if i < 0 {
			t.Errorf("%s, held by %s when it was killed, did not run again within %s: %s",
				id, k.node.id, limit.Sub(k.at), history(hits[id]))
			continue
		}
		slowest = max(slowest, hits[id][i].at.Sub(k.at))
	}
	var late []string
	for i, id := range c.oneOff {
		if !c.oneOffDue(i).After(k.at) && len(hits[id]) == 0 {
			late = append(late, id)
		}
	}
	if len(late) > 0 {
		t.Errorf("%d one-off tasks due before the kill had not run %s after it: %v",
			len(late), limit.Sub(k.at), late[:min(len(late), 10)])
	}
	s := fmt.Sprintf("e2e sigkill: killed %s holding %d tasks; released after %s; "+
		"all ran again on the others within %s of the kill", k.node.id, len(k.held),
		k.released.Round(time.Millisecond), slowest.Round(time.Millisecond))
	t.Log(s)
	fmt.Println(s)
}

// restart is what a PostgreSQL restart in the middle of the load caught.
type restart struct {
	// down is when the database stopped answering, back when it was up
	// again.
	down, back time.Time
	// running are the tasks running when the server went down, as far as
	// the database told before and after.
	running map[string]bool
}

// caught reports whether the restart caught a run: its claim was made
// before the server went down, or it called while the server was down.
func (rs *restart) caught(h hit) bool {
	return h.late || (!h.started.IsZero() && h.started.Before(rs.down))
}

// restartPostgres restarts the cluster under the load. With down zero it
// restarts it at once; otherwise it stops it, waits down and starts it.
func (c *cluster) restartPostgres(pg *pgCluster, down time.Duration) *restart {
	t, ctx := c.t, c.t.Context()
	rs := &restart{running: map[string]bool{}}

	// Read the running tasks until the server stops answering.
	read, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		for i := 0; ; i++ {
			ids, err := c.running(ctx, time.Now())
			if err != nil {
				rs.down = time.Now()
				return
			}
			for _, id := range ids {
				rs.running[id] = true
			}
			if i == 0 {
				close(read)
			}
			time.Sleep(20 * time.Millisecond) // poll
		}
	}()
	select {
	case <-read:
	case <-watched:
		t.Fatal("read the running tasks: the database does not answer")
	}
	var err error
	if down == 0 {
		err = pg.restart(ctx)
	} else if err = pg.stop(ctx); err == nil {
		time.Sleep(down) // the outage
		err = pg.start(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	rs.back = time.Now()
	<-watched
	before := len(rs.running)

	// A claim made as the server went down, its answer lost, may still be
	// running under it.
	var after []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		if after, err = c.running(ctx, rs.down); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the pool reconnects
	}
	if err != nil {
		t.Fatalf("read the running tasks after the restart: %v", err)
	}
	for _, id := range after {
		rs.running[id] = true
	}
	t.Logf("PostgreSQL was down for %s; %d tasks were running before, %d still after",
		rs.back.Sub(rs.down).Round(time.Millisecond), before, len(after))
	return rs
}

// checkResumed checks that every node ran tasks after the restart and
// logged what happened to it.
func (c *cluster) checkResumed(rs *restart) {
	t := c.t
	ran := map[string]int{}
	for _, hs := range c.counter.byTask() {
		for _, h := range hs {
			if h.at.After(rs.back) {
				ran[h.owner]++
			}
		}
	}
	for _, n := range c.nodes {
		if ran[n.id] == 0 {
			t.Errorf("%s ran no task after PostgreSQL restarted\n%s", n.id, n.log.tail(20))
		}
	}
	s := fmt.Sprintf("e2e %s: PostgreSQL down for %s; %d tasks running at the restart; "+
		"runs after it: node-1=%d node-2=%d node-3=%d; warnings logged: node-1=%d node-2=%d "+
		"node-3=%d", c.name, rs.back.Sub(rs.down).Round(time.Millisecond), len(rs.running),
		ran["node-1"], ran["node-2"], ran["node-3"],
		warnings(c.nodes[0]), warnings(c.nodes[1]), warnings(c.nodes[2]))
	t.Log(s)
	fmt.Println(s)
}

// checkShares checks that every node took a fair part of the runs.
func (c *cluster) checkShares(ty *tally) {
	total := 0
	for _, n := range ty.perNode {
		total += n
	}
	for _, n := range c.nodes {
		if share := ty.perNode[n.id]; share < total/(4*nodeCount) {
			c.t.Errorf("%s ran %d of %d runs, want at least a quarter of its share", n.id,
				share, total)
		}
	}
}
