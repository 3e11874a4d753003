// Package testenv gives integration tests of idemq's drivers an isolated
// environment on real servers: a PostgreSQL schema and a Redis key prefix
// that belong to one test and are removed when it ends.
//
// Drivers are tested against the servers they target, never against mocks,
// because the guarantees they give (atomic claims, fencing tokens, row locks,
// Lua scripts) live in the server.
//
// # Isolation
//
// [PostgresWithSchema] creates a schema with a fresh random name
// (idemq_test_<hex>) and returns a pool whose connections use it as their
// only search_path, so unqualified table names resolve to it and a driver's
// Migrate creates its tables there. [Postgres] is the same without the name.
// [Redis] returns a client and a key prefix (idemq-test:<hex>:) that the test
// puts in front of every key it writes. Tests may therefore run in parallel,
// in one package or many, against one server.
//
// Cleanup is registered with t.Cleanup: the pool is closed and the schema
// dropped CASCADE; every key under the prefix is deleted and the client
// closed. Keys a test writes outside its prefix are not cleaned up.
//
// # Configuration
//
// The servers are found through environment variables:
//
//	IDEMQ_POSTGRES_URL      pgx connection string; default postgres://postgres@127.0.0.1:5432/test
//	IDEMQ_REDIS_ADDR        host:port; default 127.0.0.1:6379
//	IDEMQ_REQUIRE_SERVICES  set to 1 to fail, rather than skip, when a server is unreachable
//
// # Unreachable servers
//
// A server that does not answer within a few seconds makes the test skip,
// with a message naming the server, its address and the variable to set, so
// that `go test ./...` on a laptop without the servers still runs the unit
// tests. CI sets IDEMQ_REQUIRE_SERVICES=1, which turns that skip into a
// failure: there, a missing server must never pass as a green run.
// Errors after the server was reached (a bad connection string, a failed
// CREATE SCHEMA) always fail the test.
package testenv
