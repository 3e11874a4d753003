package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestQuickstart(t *testing.T) {
	var out strings.Builder
	require.NoError(t, run(&out))
	got := out.String()
	require.Contains(t, got, "charged 10 of 10 orders")
	require.Contains(t, got, "each exactly once: true")
	require.Contains(t, got, "messages acked:       13")
	require.Contains(t, got, "duplicates skipped:   3")
	require.Contains(t, got, "order-4 (flaky):      ok after 3 calls in delivery 1")
	require.Contains(t, got, "order-7 (panic):      ok on delivery 2")
	require.Contains(t, got, "order-9 (throttled):  ok on delivery 2")
	require.Contains(t, got, "queue now: 0 ready, 0 delayed, 0 leased")
}
