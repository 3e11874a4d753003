// Package stockpg keeps limited stock in PostgreSQL: a [Store] that
// implements [stock.Store] on five tables, for any number of processes
// sharing them.
//
// # Guarantees
//
// Every method is one SQL statement at READ COMMITTED, so each step is
// atomic and durable once it returns: a committed reservation, its
// confirmation and its codes survive a crash of the client or of the
// server (as far as the server's own durability settings go). Reserve's
// statement serves a batch of concurrent Reserves (see Group commit), or
// with [Options.PerCall] that Reserve alone (see Per-call reserves); a
// sharded store may pass a request on to a second one (see Sharded mode).
//
//   - No unit is granted twice and none is lost. Every unit an item ever
//     got is in exactly one place, a shard row's free count, a hold or a
//     confirmed reservation, and every statement moves units between
//     those places in one step. Decisions are taken on rows the statement
//     has locked, which PostgreSQL re-reads at their newest version after
//     waiting for a concurrent writer, never on a stale snapshot: a
//     reservation takes units only from shard rows whose counts, locked,
//     still cover them.
//   - No serialization failures and no retries: nothing runs at
//     SERIALIZABLE, and the statements take their row locks in one order
//     (shard rows, then reservations, then the keys of new reservations,
//     with holder rows before the keys for an item with a holder limit
//     and after them for one without; several of a kind always in one
//     order), so no two of them deadlock. (A caller's transaction that runs several, like
//     any transaction that locks rows, can.)
//   - A Reserve retried with the same ID answers the same reservation and
//     takes nothing more, whether the first attempt committed long ago,
//     is in the same batch, or races it from another process: a batch
//     whose insert of an ID waits for a concurrent one that commits
//     decides again, with that request answered as a retry.
//   - The per-holder limit is checked in the same statement that takes
//     the units, on per-(item, holder) rows the statement locks.
//   - A hold whose time has passed on the database's clock is expired,
//     swept or not: Get reports it expired, Confirm refuses it with
//     [stock.ErrExpired], Level counts its units as available, and the
//     next Reserve of the item takes them back in the same statement that
//     grants them again. If the process that took a hold dies before
//     confirming it, nothing needs to run for the units to come back.
//   - Disable takes effect for every Reserve that starts after it
//     returns: a batch reads the item's row after its statement starts,
//     and every request in it was made before.
//
// A Reserve whose context is done before a batch takes it up (or, per
// call, before its statement starts) returns the context's error and
// takes nothing. One whose context ends later returns the error too, but
// may or may not have taken effect; retried with the same reservation ID,
// Reserve finds out which. Sweep
// skips shards that other statements hold at that moment, so it may
// report fewer expired holds than are due; their units are counted as
// available anyway. In a rare race the per-holder limit errs on the safe
// side: a holder whose expired hold is being swept at that very moment
// may be refused with [stock.ErrHolderLimit] once.
//
// # Group commit
//
// An item's row of free units is locked by each statement that takes
// units, until its transaction has committed, WAL flush included: one
// reservation per transaction would cap a hot item at one commit at a
// time. So a Store groups concurrent Reserves of one item: a Reserve
// joins the item's pending list and, if no batch of the item is under
// way, starts one. A batch takes every request pending (up to 1,000) and
// runs them in one call of a function, <prefix>_reserve_batch, that
// [Migrate] creates: one round trip, one transaction, one commit, the
// item's shards locked once. Requests that arrive meanwhile wait for it
// and go together in the next batch. Under load each batch carries many
// requests; when idle, a Reserve costs one round trip. The reservations
// of one batch share their created_at. A Store runs goroutines only while
// requests are pending, and needs no Close.
//
// The function takes the requests in order, and answers each exactly as a
// Reserve alone would have in that order: a second request with an ID
// already in the batch is a retry of the first (or [stock.ErrConflict]),
// and one with an ID the batch refused is tried again; the holder limit
// counts the units granted to earlier requests of the batch; units run out
// in order (in a sharded store, requests passed on to an exact batch come
// after those their shard served). A batch's statement runs on a context
// of its own, without the callers' values or deadlines, and is cancelled
// only when every caller in it has given up.
//
// In a caller's transaction (a pgx.Tx as the DBTX), Reserves are not
// grouped: a transaction cannot be shared with other callers, so each
// Reserve runs alone, as a batch of one, in that transaction.
//
// # Per-call reserves
//
// With [Options.PerCall], a Reserve through a pool is not grouped either:
// it is a statement and a transaction of its own, on the caller's
// context. It first calls the function <prefix>_reserve_one, a few
// statements on rows found by key for the common case: an ID without a
// reservation, and a shard with units for it (a random one preferred,
// locked as a sharded batch locks one) and, with a holder limit, room in
// the holder's count. That function also answers what needs no lock: the
// reservation the ID already has, an unknown or disabled item, and an
// item that a snapshot of the whole shows sold out. It hands every other
// case back having reserved nothing: an ID that gets a reservation from a
// concurrent Reserve meanwhile, a short shard while the item may have
// enough, a holder at the limit before ended reservations are discounted.
// Such a Reserve then takes the batch function's path with one request. An unsharded store's call locks the item's row (it is exact).
// A sharded store's first call locks one shard, preferring a random one;
// if that shard is short while the item as a whole may not be, a second
// call locks every shard and decides on their total. The first has
// committed by then, and released its shard: it reserved nothing, and
// what else it may have done, taking back holds whose time has passed (of
// its shard, and the holder's in any shard) and no longer counting the
// holder's ended reservations, leaves every count right on its own, as a
// Sweep does.
//
// Which to choose:
//
//   - Group commit, the default, is the one for a hot item reserved from
//     one process: a batch's commit, round trip and the function's fixed
//     cost serve all its requests, and it holds the item's rows for one
//     transaction per batch, not per reservation. In one process it
//     reserves a hot item many times faster than per-call Reserves,
//     sharded or not. Its costs: under load a Reserve waits for the batch
//     under way before its own starts, and the Reserves of a batch share
//     its statement, so an error of the statement (a lost connection, a
//     timeout) fails them all, and only the last caller to give up
//     cancels it.
//   - Per call suits a store whose load is light, or spread over many
//     items or many processes, so that batches would carry one request
//     or a few anyway: a Reserve then starts at once, waits for no one
//     else's batch and runs no goroutine, its context cancels its own
//     statement, and its errors are its own. On a hot item, though, each
//     Reserve holds the item's row (or one shard) from its statement
//     until its own commit is flushed, so an unsharded item takes
//     reservations about one commit at a time, and concurrent callers
//     queue in PostgreSQL's lock manager, which costs more the more of
//     them wait. That is where sharding helps most: N shards take N
//     commits at once, until the database runs out of processors, since
//     each Reserve also pays the function's fixed cost alone.
//   - A Reserve in a caller's transaction (a store on a pgx.Tx) runs
//     alone, like a per-call one, and holds its row, or its shard, until
//     the caller commits, so an unsharded hot item takes one such
//     transaction at a time; a sharded one takes up to N, at the price
//     of a savepoint around the Reserve's first step (two more round
//     trips).
//
// # Sharded mode
//
// With [Options.Shards] N > 1 an item's free units are split over N rows.
// A sharded store's batch locks one shard: one that no one else holds,
// with units for its smallest request if possible (FOR UPDATE SKIP
// LOCKED), or, if every shard is held, the one it would have preferred,
// once it is free. It serves from that shard the requests it can; a
// request for which the shard is short while a snapshot says that the
// item as a whole may have enough is passed on to the item's exact batch,
// which locks every shard in order and decides on their total, taking
// units from several shards if need be and spreading what is left evenly
// again. An unsharded store's batches are exact.
//
// An unsharded Store runs one batch of an item at a time. A sharded one
// runs a second, on another shard, while a few requests (8) are waiting,
// so that the database works on one batch while the other commits or
// while its callers are answered, and more, up to one per shard, while a
// full batch is waiting. Batches of different processes on one item lock
// different shards, and commit in parallel; an unsharded item's batches
// queue on its one row. Within one process, group commit already spreads
// a commit over many reservations, so sharding adds little there: it pays
// off with many processes, with batches too large for one, and with
// per-call Reserves, whose commits it spreads over the shards.
//
// Sold out is answered only by the exact batch, on every shard locked, or
// by a snapshot read whose total of free units (and expired holds) is
// short, so a shard skipped while locked never makes an item look sold
// out. The costs: the last units of an item are reserved through exact
// batches again; Level and the snapshot check read N rows; and a Restock
// locks all N. The item's row (disabled, limit) is only read. A hold
// gives its units back to the shard it was taken from, or to whichever
// shard the statement that expires it holds: units are interchangeable,
// and Restock and exact batches even the shards out.
//
// # Code pools
//
// A code item's units are its free codes. Confirm locks the reservation
// (only a live hold: any other state is final and answered unlocked),
// then as many free codes as it has units, in the order they were loaded
// and skipping codes that concurrent confirmations hold, and confirms the
// reservation with all of them or not at all.
//
// # Transactions
//
// The DBTX is normally a *pgxpool.Pool, and each statement is a
// transaction of its own. A pgx.Tx makes the store's statements part of
// the caller's transaction: what they do commits or rolls back with it,
// and the rows they lock (an item's shards, holders) stay locked until
// then, so keep such transactions short. The transaction must run at
// READ COMMITTED. Reserve then runs alone, without group commit, as with
// [Options.PerCall]; a sharded store's first try, on one shard, runs under
// a savepoint that is rolled back if the exact step must follow, so that
// it does not wait for every shard while holding one. A Confirm or
// Release there of a hold past its time answers from its snapshot without
// waiting for another transaction that may be confirming or releasing the
// hold, since waiting could deadlock with it. (That first try
// changes no row inside reserve_batch's exception block unless it grants:
// a row changed there would stay locked for its waiters until the whole
// transaction ends, rollback to the savepoint or not.)
//
// # Schema
//
// [Migrate] creates, if they do not exist, these tables (named after
// [Options.Prefix], default [DefaultPrefix]) and their indexes, and
// creates or replaces the functions <prefix>_reserve_batch and
// <prefix>_reserve_one:
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
// [Schema] returns the same SQL for migration tools; run it again after
// upgrading this package, so that the functions are the ones it calls.
//
// Every deadline is computed on the database's clock
// (statement_timestamp()), never the client's, so processes with skewed
// clocks agree on when a hold ends. Holds are passed in whole
// microseconds, PostgreSQL's resolution, rounded up.
package stockpg
