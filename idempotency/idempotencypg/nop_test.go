package idempotencypg_test

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// nopDB and nopBeginner stand in for a database in tests of configuration
// that must fail before any statement runs. They are not mocks of
// PostgreSQL: every call fails.
type nopDB struct{}

var errNoDB = errors.New("no database in this test")

func (nopDB) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, errNoDB
}
func (nopDB) Query(context.Context, string, ...any) (pgx.Rows, error) { return nil, errNoDB }
func (nopDB) QueryRow(context.Context, string, ...any) pgx.Row        { return nil }

type nopBeginner struct{}

func (nopBeginner) Begin(context.Context) (pgx.Tx, error) { return nil, errNoDB }
