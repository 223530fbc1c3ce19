package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// writeQueries lists the statements of write transactions, which Open
// prepares once on the writer connection.
var writeQueries []string

// writeQuery registers q as a write statement and returns it.
func writeQuery(q string) string {
	writeQueries = append(writeQueries, q)
	return q
}

// wtx is a write transaction on the writer connection. Its statements are
// the writer's prepared ones, bound to the transaction on first use.
type wtx struct {
	tx    *sql.Tx
	db    *DB
	stmts map[string]*sql.Stmt
}

// write runs fn in a write transaction, which BEGIN IMMEDIATE opens on the
// writer connection, and commits it unless fn fails.
//
// fn's statements run with a context that is never cancelled: a cancelled
// context costs the driver a goroutine per statement. The transaction still
// ends with ctx, which rolls it back.
func (db *DB) write(ctx context.Context, fn func(ctx context.Context, w *wtx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(context.WithoutCancel(ctx), &wtx{tx: tx, db: db}); err != nil {
		return err
	}
	return tx.Commit()
}

// stmt returns the statement of q, which writeQuery must have registered.
func (w *wtx) stmt(ctx context.Context, q string) *sql.Stmt {
	if s, ok := w.stmts[q]; ok {
		return s
	}
	ps, ok := w.db.stmts[q]
	if !ok {
		panic("sqlite: write statement not registered: " + firstLine(q))
	}
	if w.stmts == nil {
		w.stmts = map[string]*sql.Stmt{}
	}
	s := w.tx.StmtContext(ctx, ps)
	w.stmts[q] = s
	return s
}

func (w *wtx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return w.stmt(ctx, q).ExecContext(ctx, args...)
}

func (w *wtx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return w.stmt(ctx, q).QueryContext(ctx, args...)
}

func (w *wtx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return w.stmt(ctx, q).QueryRowContext(ctx, args...)
}

// execAffected runs q and returns the number of rows it changed.
func (w *wtx) execAffected(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := w.exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// prepare prepares the write statements on the writer connection.
func (db *DB) prepare(ctx context.Context) error {
	db.stmts = make(map[string]*sql.Stmt, len(writeQueries))
	for _, q := range writeQueries {
		s, err := db.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", firstLine(q), err)
		}
		db.stmts[q] = s
	}
	return nil
}

// read runs fn in a read transaction on the read pool, which sees one
// snapshot. Like write, it runs fn's statements with a context that is never
// cancelled, and ends the transaction with ctx.
func (db *DB) read(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(context.WithoutCancel(ctx), tx); err != nil {
		return err
	}
	return tx.Commit()
}

// querier runs queries in a read or a write transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func firstLine(q string) string {
	q = strings.TrimSpace(q)
	if i := strings.IndexByte(q, '\n'); i >= 0 {
		return q[:i]
	}
	return q
}
