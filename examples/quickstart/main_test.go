package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/internal/testenv"
)

func TestQuickstart(t *testing.T) {
	check(t, "memory", config{queue: "memory"})
}

func TestQuickstartRedis(t *testing.T) {
	_, prefix := testenv.Redis(t) // skips or fails per IDEMQ_REQUIRE_SERVICES
	check(t, "redis", config{queue: "redis", redisAddr: testenv.RedisAddr(), name: strings.Trim(prefix, ":")})
}

func TestQuickstartPostgres(t *testing.T) {
	_, schema := testenv.PostgresWithSchema(t)
	url := testenv.PostgresURL()
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	check(t, "postgres", config{queue: "postgres", postgresURL: url + sep + "search_path=" + schema})
}

func check(t *testing.T, queue string, cfg config) {
	t.Helper()
	var out strings.Builder
	require.NoError(t, run(&out, cfg))
	got := out.String()
	require.Contains(t, got, "charged 10 of 10 orders")
	require.Contains(t, got, "each exactly once: true")
	require.Contains(t, got, "messages acked:       13")
	require.Contains(t, got, "duplicates skipped:   3")
	require.Contains(t, got, "order-4 (flaky):      ok after 3 calls in delivery 1")
	require.Contains(t, got, "order-7 (panic):      ok on delivery 2")
	require.Contains(t, got, "order-9 (throttled):  ok on delivery 2")
	require.Contains(t, got, queue+" queue now holds 0 messages")
}
