// Package stockredis is a [stock.Store] in Redis (7.0 or later), for
// services that already run Redis and need reservations fast, and that
// keep the lasting record of what was handed out somewhere that does not
// forget (see below).
//
//	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs})
//	store, err := stockredis.New(client, stockredis.Options{})
//	if err != nil { ... }
//
// # Layout
//
// Each item's keys carry the item's name as their hash tag,
// "<Prefix>{<item>}:...", with '{', '}' and '%' percent-escaped so that any
// name makes a tag of its own: the item's counters, the sorted set of its
// holds by expiry, its per-holder counts, its codes and its reservations
// (the fields of one hash, a record each) all live in one slot, on one
// node of a cluster. To spread the load of
// many items over a cluster, it is enough that they have different names;
// one very hot item is served by one node.
//
// Two kinds of key stand apart: "<Prefix>items", the set of item names
// that Sweep walks, and "<Prefix>{res:<id>}", which records the item a
// reservation ID belongs to. Confirm, Release and Get are given only an
// ID, and the reservation itself lives in its item's slot, so they first
// read that pointer and then run a script in the item's slot: two round
// trips (three for a Confirm that confirms: the binding then becomes
// lasting). An ID stays bound to its item while the binding lasts, even
// if its Reserve was refused: reusing it for another item meanwhile fails
// with [stock.ErrConflict] (MemoryStore would accept it). A binding lasts
// until the end of the longest hold reserved under it plus
// [Options.Retain] (a day by default), and for good once its reservation
// is confirmed, so that a storm of refused Reserves leaves no keys behind
// for good. Once a binding has lapsed, the ID may be reserved in another
// item, even if it has a reservation in this one (MemoryStore would
// refuse that for good): keep an ID to one item, or make Retain as long
// as a client may retry.
//
// Options.Prefix must contain no brace, so that the store's own tag
// decides each key's slot.
//
// The per-holder counts are kept only while the item has a holder limit:
// Define setting a limit counts them from the item's reservations, in one
// script whose time grows with them, and Define removing it drops them. A
// limit written by a build that predates this (which keeps the counts
// for every item) is noticed by the next script of the item, which counts
// them first. Going back to such a build weakens the limits of items
// defined without one meanwhile: while it runs, it counts their holders'
// units from zero (a newer build counts them afresh again).
//
// The scripts count in Lua numbers, exact for every integer below 2^53, so
// Restock refuses to take an item past 2^53-1 units in all.
//
// # Reserve in one round trip
//
// Reserve sends the pointer's SET NX GET and the reservation script in
// one pipeline. Concurrent Reserves of one item share that round trip
// (group commit): Reserves of an item queue while its pipeline is in
// flight, a second pipeline goes out once 8 of them wait (never more than
// two per item), and each pipeline carries up to 128 of them, the pointer of each ID and one script that makes their
// reservations in order, each with exactly the checks and the answer it
// would get alone (a later one sees the units, holder counts and IDs the
// earlier ones took). An item reserved by one caller at a time costs a
// round trip per call; a hot item spreads a round trip and a script over
// every call waiting, and no call waits for a timer. A Reserve whose
// context ends before its pipeline is sent is dropped from the queue.
//
// When the pointer names another item, the script has run for that ID all
// the same: its Reserve then undoes what it made, found by a nonce of the
// call that the script records, in a second round trip, and fails with
// [stock.ErrConflict]. A pipeline's SETs run before its script, but
// another pipeline of the item may run in between; in Redis Cluster the
// pointers and the item are in different slots, so the commands may go
// to different nodes, and neither order nor all of them running is
// assured. Whatever happens, these hold:
//
//   - Every reservation is an ordinary hold in its item: if nothing
//     reaches it, it expires when its hold ends and its units go back.
//     A reservation can be confirmed only through its pointer, so one
//     that no pointer leads to is never confirmed (until a retry of its
//     Reserve binds the pointer, see below).
//   - A pointer without a reservation (the script failed or did not run)
//     reads as [stock.ErrNotFound]; a reservation without a pointer (the
//     SET failed, or the client died before it) cannot be found. Reserve
//     returns an error in both cases, and a retry with the same ID binds
//     the pointer and returns the reservation, taking nothing more.
//   - A reservation made under an ID bound to another item is reached by
//     no one: every Reserve of that ID for this item fails with
//     ErrConflict, and the other calls look in the other item. If the
//     undo does not run (the client died, or the undo failed), its units
//     are held until the hold ends, and never longer. A caller whose
//     context ends while its call is in flight gets the context's error
//     at once, and the undo runs when the answer comes.
//   - The undo removes only a reservation whose nonce is the call's own,
//     and a call given a held or expired reservation records its own
//     nonce in it, so an undo leaves alone a reservation that a later call
//     was given; go-redis's retry of the script keeps the nonce, and finds
//     its own reservation. One window remains: if the binding to the other
//     item lapses between a call's two halves and a concurrent Reserve of
//     the ID binds it to this item, the call's script may find that
//     Reserve's reservation, take it over and undo it. That Reserve then
//     answered a hold that Get no longer finds; its units are free again,
//     and a retry makes a new one. Keep Retain long, and IDs to one item.
//
// # Guarantees
//
// Every change to an item's units (Reserve, Confirm, Release, Restock,
// LoadCodes, the expiry of holds) is one Lua script in the item's slot,
// so it is atomic: of any number of concurrent Reserves, no two are
// granted the same unit, and an item's units always add up (available +
// held + confirmed = units ever added). The disabled flag and the
// per-holder limit (units held and confirmed together) are checked in the
// same script as the units, so Disable takes effect for every Reserve that
// starts after it returns.
//
// A hold's expiry is a predicate on the Redis server's clock (TIME inside
// the scripts, in whole milliseconds, holds rounded up): a hold whose time
// has passed cannot be confirmed ([stock.ErrExpired]) and reads as expired,
// swept or not. Once the earliest hold of an item is due, each batch of
// Reserves of the item first expires up to 100 due holds, and, before it would refuse,
// as many more as it takes to be sure the refusal does not count a hold
// that has run out; Level expires all of the item's due holds before it
// reads. Each hold is expired once, so that work is paid for by the holds
// that cause it, and finding the due holds costs O(log n) in the item's
// holds: no script scans them. [Store.Sweep] does the same in the
// background, one script per item.
//
// Reservations are kept, whatever their state, for as long as the item's
// keys exist, so that a Reserve retried any time later with the same ID
// gets the same reservation back, even once its binding has lapsed (the
// retry binds it again). Each costs a few hundred bytes of Redis memory
// (about 290 for a held one with short IDs, in its item's keys, plus its
// pointer). An item keeps a record for each reservation it granted, not
// for refusals, so its memory grows with the units it hands out and takes
// back, not with the number of requests.
//
// # Retried calls
//
// go-redis retries a command whose reply was lost, so a script may run
// twice for one call. Reserve (by its ID; a batch retried gives each call
// the reservation it made), Confirm, Release, Define,
// Disable and Enable do the same thing when run twice. Restock and each
// batch of LoadCodes leave a receipt in the item's slot for one minute,
// so that their retry adds nothing more (and LoadCodes reports what the
// first run added). A retried Sweep may report fewer holds than it
// expired. A call that still fails, or whose context ends, may or may not
// have taken effect; retry Reserve with the same ID to find out.
//
// # When Redis fails
//
// The store is as durable as the Redis it runs on, and Redis acknowledges
// writes before they are safe on disk or on a replica:
//
//   - Without persistence, a restart loses every item's counts and every
//     reservation. The caller must define and re-stock the items from its
//     own system of record, and treat every reservation it has not
//     confirmed there as lost.
//   - With AOF and appendfsync everysec, a crash can lose up to about a
//     second of writes: reservations, confirmations and restocks. A unit
//     whose Confirm was lost can be granted again.
//   - Replication is asynchronous: a failover to a replica can lose the
//     writes the old primary had not yet sent, with the same effects.
//
// So before handing out anything of value (a code, a shipment), record the
// confirmed reservation in the caller's own database, or keep the stock in
// PostgreSQL (stockpg), where a confirmation that was acknowledged is
// durable. Run Redis with maxmemory-policy noeviction: an evicted key is
// stock lost or granted twice.
package stockredis
