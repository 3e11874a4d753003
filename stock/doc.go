// Package stock hands out limited stock (partner vouchers, campaign items)
// so that no unit is ever granted twice and none is lost, even when
// thousands of customers redeem at once.
//
// A [Store] keeps items and reservations. Reserve holds units for a holder
// for a while; Confirm makes them permanent (and, for a pool of unique
// codes, hands out the codes); Release gives them back; a hold that is
// neither confirmed nor released expires on the store's clock and its
// units return. Every step is atomic in the store:
//
//   - a Reserve retried with the same reservation ID returns the same
//     reservation and takes nothing more, so callers can retry freely;
//   - per-holder limits (one voucher per customer) are checked in the same
//     step as the units;
//   - Disable takes effect for every Reserve that starts after it returns.
//
// # Showing availability
//
// [Display] renders a level for customers ("10+", a countdown,
// "Unavailable"); [LevelCache] serves it with bounded staleness. The cache
// is never used to admit a reservation.
//
// # When the partner fails
//
// Wrap the partner call in a backpressure.Breaker whose OnStateChange is
// [DisableWhileOpen]: a failing partner makes the item unavailable at once,
// and the breaker's half-open state enables it again for the probe,
// unless an operator disabled it meanwhile.
//
// Item names, holders, reservation IDs and codes are at most [MaxNameLen]
// bytes in every store.
//
// [MemoryStore] is for tests and single-process services; stock/stockpg
// and stock/stockredis are the shared stores, each documenting what it
// guarantees when its server fails.
package stock
