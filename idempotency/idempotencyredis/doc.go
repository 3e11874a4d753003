// Package idempotencyredis is an [idempotency.Store] in Redis (7.0 or
// later), for consumers that already run Redis and can accept what Redis
// may forget when it fails (see below).
//
//	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs})
//	store, err := idempotencyredis.New(client, idempotencyredis.Options{})
//	if err != nil { ... }
//	mw, err := idempotency.Middleware(idempotency.Options{Store: store})
//
// # Guarantees
//
// Each key is one Redis hash, "<Prefix>{<SHA-256 of the key in hex>}".
// Claim, Extend, Complete and Release are each one Lua script on that hash,
// so each is atomic: of any number of consumers claiming an absent key at
// once, exactly one is answered Claimed. Extend, Complete and Release
// compare the token and the state inside the script and change nothing
// unless the token still holds the claim.
//
// Calls made while a few others are already on their way to Redis queue up
// and are sent together as one pipeline, each still its own script on its
// own key; a call whose context ends while it waits is never sent.
//
// Deadlines are kept by PEXPIRE, on the Redis server's clock: an
// in-progress record lives for its lease, a completed one for its
// retention, and then it is simply gone, so the key is absent again.
// Leases and retentions must be positive and are rounded up to whole
// milliseconds; a non-positive one is rejected with an error and changes
// nothing.
//
// Fencing tokens are the server's time in microseconds when the claim was
// taken (or one more than the previous token, if that is larger), so the
// tokens of one key grow even across records that expired or were released
// and left nothing behind. That rests on the server's clock moving forward:
// a released record is kept as a tombstone until its lease would have run
// out so a clock step back in that window does not repeat a token, but a
// clock step back by more than a lease, or a failover to a replica whose
// clock is behind, can hand out a smaller token than one issued before.
//
// Keys may hold any bytes. Hashing them gives a hash tag that is never
// empty and never contains a brace, so every key of a record stays in one
// slot and the store runs on Redis Cluster unchanged. Options.Prefix must
// therefore contain no brace.
//
// go-redis retries a command whose reply was lost. Each call carries a
// random nonce, so a retried Claim, Complete or Release recognises the
// change its first attempt made and reports success, not a conflict. A
// call that still fails, or whose context ends, may or may not have taken
// effect: a claim taken that way lapses after its lease.
//
// # When Redis fails
//
// The store is as durable as the Redis it runs on, and Redis acknowledges
// writes before they are safe on disk or on a replica:
//
//   - Without persistence, a restart forgets every key: completed keys
//     (their duplicates run again) and in-progress claims (a second
//     consumer can start the same work while the first still runs).
//   - With AOF and appendfsync everysec, a crash can lose up to about a
//     second of claims and completions, with the same effects.
//   - Replication is asynchronous: a failover to a replica can lose the
//     writes the old primary had not yet sent, again with the same effects.
//
// Callers who cannot accept that a duplicate may run again after such a
// failure should keep their keys in Postgres (idempotencypg), ideally in
// the same transaction as the handler's writes (the transactional inbox),
// or make the effect itself idempotent with the fencing token.
package idempotencyredis
