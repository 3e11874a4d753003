package idempotencypg

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DBTX is what the store and the schema functions run their statements
// through. *pgxpool.Pool, *pgx.Conn and pgx.Tx satisfy it.
type DBTX interface {
	Exec(ctx context.Context, sql string, arguments ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var (
	_ DBTX = (*pgxpool.Pool)(nil)
	_ DBTX = (*pgx.Conn)(nil)
	_ DBTX = pgx.Tx(nil)
)

// TxBeginner starts the transactions of [Inbox]. *pgxpool.Pool and
// *pgx.Conn satisfy it; so does pgx.Tx, whose Begin opens a savepoint.
type TxBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// txOptionsBeginner is the optional capability [InboxOptions.TxOptions]
// needs. *pgxpool.Pool and *pgx.Conn have it; pgx.Tx does not, since a
// savepoint cannot change the isolation level.
type txOptionsBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

var (
	_ TxBeginner        = (*pgxpool.Pool)(nil)
	_ TxBeginner        = (*pgx.Conn)(nil)
	_ TxBeginner        = pgx.Tx(nil)
	_ txOptionsBeginner = (*pgxpool.Pool)(nil)
	_ txOptionsBeginner = (*pgx.Conn)(nil)
)
