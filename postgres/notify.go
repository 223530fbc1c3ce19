package postgres

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// wakeupChannel is the NOTIFY channel. Its payload is the store's schema so
// that stores sharing a database in different schemas ignore each other.
const wakeupChannel = "deputy_wakeup"

// Listener timing.
const (
	// listenPing is how long the listener waits for a notification before
	// it pings, which finds connections that died without a word.
	listenPing = 30 * time.Second
	// listenBackoffMin and listenBackoffMax bound the wait between
	// reconnection attempts.
	listenBackoffMin = 50 * time.Millisecond
	listenBackoffMax = 5 * time.Second
	// notifyTimeout bounds one NOTIFY.
	notifyTimeout = 5 * time.Second
)

// wake asks the notify loop to send a notification. It never blocks: a
// request made while one is pending joins it.
func (db *DB) wake() {
	select {
	case db.notify <- struct{}{}:
	default:
	}
}

// deliver hands a wakeup to [DB.Wakeups] without blocking.
func (db *DB) deliver() {
	select {
	case db.wakeups <- struct{}{}:
	default:
	}
}

// notifyLoop sends one NOTIFY per request, at most one per NotifyInterval:
// requests that arrive in between coalesce into the next one.
func (db *DB) notifyLoop() {
	defer db.wg.Done()
	var lastErr time.Time
	for {
		select {
		case <-db.ctx.Done():
			return
		case <-db.notify:
		}

		ctx, cancel := context.WithTimeout(db.ctx, notifyTimeout)
		_, err := db.pool.Exec(ctx, "SELECT pg_notify($1, $2)", wakeupChannel, db.channel)
		cancel()
		if err != nil && db.ctx.Err() == nil && time.Since(lastErr) > time.Minute {
			// Nodes still poll, so a lost notification only delays a claim.
			lastErr = time.Now()
			db.log.Warn("send wakeup notification", "error", err)
		}

		t := time.NewTimer(db.cfg.NotifyInterval)
		select {
		case <-db.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// listenLoop keeps a dedicated connection listening for wakeups, and
// reconnects with backoff when it drops.
func (db *DB) listenLoop(cfg *pgx.ConnConfig) {
	defer db.wg.Done()
	backoff := listenBackoffMin
	for db.ctx.Err() == nil {
		listened, err := db.listen(cfg)
		if db.ctx.Err() != nil {
			return
		}
		if listened {
			// A lost connection is worth a warning; the failed attempts to
			// reconnect that may follow are not.
			backoff = listenBackoffMin
			db.log.Warn("wakeup listener disconnected", "error", err)
		} else {
			db.log.Debug("wakeup listener reconnect", "error", err, "retry_in", backoff)
		}

		// Jitter spreads the reconnections of nodes that lost the server at
		// the same moment.
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-db.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, listenBackoffMax)
	}
}

// listen connects, listens and delivers wakeups until the connection fails
// or the store closes. It reports whether it got as far as listening.
func (db *DB) listen(cfg *pgx.ConnConfig) (listened bool, err error) {
	conn, err := pgx.ConnectConfig(db.ctx, cfg)
	if err != nil {
		return false, err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	}()
	if _, err := conn.Exec(db.ctx, "LISTEN "+wakeupChannel); err != nil {
		return false, err
	}
	db.log.Debug("wakeup listener connected", "pid", conn.PgConn().PID())

	// Notifications sent while the listener was down are lost: wake the
	// claim loop in case one was.
	db.deliver()
	db.listenPID.Store(conn.PgConn().PID())
	select {
	case db.listening <- struct{}{}:
	default:
	}

	for {
		ctx, cancel := context.WithTimeout(db.ctx, listenPing)
		n, err := conn.WaitForNotification(ctx)
		cancel()
		switch {
		case err == nil:
			if n.Payload == db.channel {
				db.notified.Add(1)
				db.deliver()
			}
		case db.ctx.Err() != nil:
			return true, db.ctx.Err()
		case pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded):
			pctx, pcancel := context.WithTimeout(db.ctx, listenPing)
			err = conn.Ping(pctx)
			pcancel()
			if err != nil {
				return true, err
			}
		default:
			return true, err
		}
	}
}
