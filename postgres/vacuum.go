package postgres

import (
	"log/slog"
)

// DefaultVacuumEvery is the default of [Config.VacuumEvery].
const DefaultVacuumEvery = 10_000

// claimedRows counts tasks claimed by this store, and starts a VACUUM of
// the tasks table once [Config.VacuumEvery] have been.
//
// Every claim leaves the claimed row's old entry dead at the front of the
// claim index, where the next claim's scan starts: between two VACUUMs each
// claim walks all the entries its predecessors left. Autovacuum visits a
// table at most once per autovacuum_naptime (a minute by default), in which
// a busy node leaves hundreds of thousands; burning down 100,000 tasks, a
// node's claims slowed down by half before the end. A VACUUM every ten
// thousand claims keeps the walk short: it takes tens of milliseconds, with
// a million tasks waiting.
func (db *DB) claimedRows(n int) {
	every := int64(db.cfg.VacuumEvery)
	if n == 0 || every < 0 || db.claimedSince.Add(int64(n)) < every {
		return
	}
	if !db.vacuuming.CompareAndSwap(false, true) {
		return
	}
	db.claimedSince.Store(0)
	db.bg.Lock()
	defer db.bg.Unlock()
	if db.ctx.Err() != nil {
		return
	}
	db.wg.Add(1)
	go db.vacuum()
}

// vacuum runs one VACUUM of the tasks table. SKIP_LOCKED leaves the table
// to a VACUUM already running, such as another node's or autovacuum's; a
// role that does not own the table gets a warning from the server and
// vacuums nothing. TRUNCATE false skips giving back the empty pages at the
// end of the table, which takes a lock that claims wait for and made each
// VACUUM four times longer in a burn-down; autovacuum still does it.
func (db *DB) vacuum() {
	defer db.wg.Done()
	defer db.vacuuming.Store(false)
	_, err := db.pool.Exec(db.ctx, "VACUUM (SKIP_LOCKED, TRUNCATE false) tasks")
	if err != nil && db.ctx.Err() == nil {
		// Claims go on without it, only slower: say so now and then.
		if n := db.vacuumFailures.Add(1); n == 1 || n%100 == 0 {
			db.log.Warn("vacuum the tasks table", slog.Any("error", err),
				slog.Int64("failures", n))
		}
	}
}
