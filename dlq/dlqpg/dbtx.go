package dlqpg

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

// Batcher is the optional capability a capped store ([Options.MaxEntries]
// above zero) needs from its DBTX: it sends the cap's lock and the insert
// as one batch, which PostgreSQL runs as one transaction. *pgxpool.Pool,
// *pgx.Conn and pgx.Tx have it.
type Batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

var (
	_ DBTX    = (*pgxpool.Pool)(nil)
	_ DBTX    = (*pgx.Conn)(nil)
	_ DBTX    = pgx.Tx(nil)
	_ Batcher = (*pgxpool.Pool)(nil)
	_ Batcher = (*pgx.Conn)(nil)
	_ Batcher = pgx.Tx(nil)
)
