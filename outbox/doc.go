// Package outbox will publish events if and only if the Postgres
// transaction that produced them commits.
//
// It will hold Enqueue, which writes events in the caller's pgx
// transaction, the outbox table's schema and Migrate, and a Relay that
// publishes pending events in per-key commit order through a
// consumer.Publisher.
package outbox
