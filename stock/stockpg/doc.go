// Package stockpg keeps limited stock in PostgreSQL: a [Store] that
// implements [stock.Store] on five tables, for any number of processes
// sharing them.
//
// # Guarantees
//
// Every method is one SQL statement at READ COMMITTED (Reserve may run a
// few, each complete in itself: see Sharded mode), so each step is atomic
// and durable once it returns: a committed reservation, its
// confirmation and its codes survive a crash of the client or of the
// server (as far as the server's own durability settings go).
//
//   - No unit is granted twice and none is lost. Every unit an item ever
//     got is in exactly one place, a shard row's free count, a hold or a
//     confirmed reservation, and every statement moves units between
//     those places in one step. Decisions are taken on rows the statement
//     has locked, which PostgreSQL re-reads at their newest version after
//     waiting for a concurrent writer, never on a stale snapshot: a
//     reservation takes units only from a shard row whose count, locked,
//     still covers them.
//   - No serialization failures and no retries: nothing runs at
//     SERIALIZABLE, and the statements take their row locks in one order
//     (shard rows, then reservations, then the holder's row), so no two of
//     them deadlock. (A caller's transaction that runs several, like any
//     transaction that locks rows, can.)
//   - A Reserve retried with the same ID answers the same reservation and
//     takes nothing more. A retry that races the first attempt waits for
//     it (on the item's shard or on the reservations' primary key); its
//     statement then fails as a whole, taking nothing, and the reservation
//     that won is read and answered.
//   - The per-holder limit is checked in the same statement that takes
//     the units, on a per-(item, holder) row the statement locks.
//   - A hold whose time has passed on the database's clock is expired,
//     swept or not: Get reports it expired, Confirm refuses it with
//     [stock.ErrExpired], Level counts its units as available, and the
//     next Reserve of the item takes them back in the same statement that
//     grants them again. If the process that took a hold dies before
//     confirming it, nothing needs to run for the units to come back.
//   - Disable takes effect for every Reserve that starts after it
//     returns: Reserve reads the item's row in the same statement.
//
// A call whose context is cancelled while its statement runs may or may
// not have taken effect; retried with the same reservation ID, Reserve
// finds out which. Sweep skips shards that other statements hold at that
// moment, so it may report fewer expired holds than are due; their units
// are counted as available anyway. In a rare race the per-holder limit
// errs on the safe side: a holder whose expired hold is being swept at
// that very moment may be refused with [stock.ErrHolderLimit] once.
//
// # Sharded mode
//
// In an unsharded store (the default) an item's free units are one row
// that every Reserve of the item locks in turn, which caps a hot item at
// one reservation per statement time. With [Options.Shards] N > 1 they
// are split over N rows, and Reserve tries them in this order:
//
//  1. a random shard with enough units that no one else holds (FOR UPDATE
//     SKIP LOCKED);
//  2. if all were busy, it waits for one shard that had enough units, and
//     takes it if it still has;
//  3. if none has enough on its own (the last units are spread thin, or
//     the request is larger than any one shard), it locks every shard in
//     order and decides on their total, taking units from several shards
//     if need be and spreading what is left evenly again.
//
// Sold out is answered only by step 3, on every shard locked, or by a
// snapshot read whose total of free units (and expired holds) is short,
// so a shard skipped while locked never makes an item look sold out. The
// costs: the last units of an item are reserved one statement at a time
// again, through step 3; Level and the snapshot check read N rows; and a
// Restock locks all N. The item's row (disabled, limit) is only read, and
// a holder's row is locked only by Reserves of the same holder, so
// neither is contended. A hold gives its units back to the shard it was
// taken from, or to whichever shard the statement that expires it holds:
// units are interchangeable, and Restock and step 3 even the shards out.
//
// # Code pools
//
// A code item's units are its free codes. Confirm locks the reservation,
// then as many free codes as it has units, in the order they were loaded
// and skipping codes that concurrent confirmations hold, and confirms the
// reservation with all of them or not at all.
//
// # Transactions
//
// The DBTX is normally a *pgxpool.Pool, and each statement is a
// transaction of its own. A pgx.Tx makes the store's statements part of
// the caller's transaction: what they do commits or rolls back with it,
// and the rows they lock (an item's shard, a holder) stay locked until
// then, so keep such transactions short. The transaction must run at
// READ COMMITTED. Reserve then runs each statement under a savepoint, so
// that a concurrent duplicate does not abort the caller's transaction.
//
// # Schema
//
// [Migrate] creates, if they do not exist, these tables (named after
// [Options.Prefix], default [DefaultPrefix]) and their indexes:
//
//	<prefix>_items         item, codes, holder_limit, disabled, reason
//	<prefix>_shards        item, shard, available (free units), added (units ever added)
//	<prefix>_reservations  id, item, holder, quantity, state, shard, counted,
//	                       expires_at, created_at, ended_at, codes
//	<prefix>_holders       item, holder, units (held or confirmed), last_id
//	<prefix>_codes         item, code, seq (load order), reservation_id
//
// A reservation's state only moves forward, from 'held'. A holder's row
// counts the units of the holder's reservations whose counted flag is
// set; Reserve clears the flag of the holder's released and expired
// reservations, and takes their units off the row, in the statement that
// checks the limit, so Release and Sweep never touch holder rows.
// [Schema] returns the same SQL for migration tools.
//
// Every deadline is computed on the database's clock
// (statement_timestamp()), never the client's, so processes with skewed
// clocks agree on when a hold ends. Holds are passed in whole
// microseconds, PostgreSQL's resolution, rounded up.
package stockpg
