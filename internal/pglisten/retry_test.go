package pglisten

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	for f := 0; f < 100; f++ {
		d := RetryDelay(f)
		require.GreaterOrEqual(t, d, RetryMin/2, "failures %d", f)
		require.LessOrEqual(t, d, RetryMax, "failures %d", f)
	}
	require.LessOrEqual(t, RetryDelay(1), RetryMin)
	require.GreaterOrEqual(t, RetryDelay(30), RetryMax/2)
}
