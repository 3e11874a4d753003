package idempotencyredis

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/idempotency/idempotencytest"
	"github.com/idemq/idemq/internal/testenv"
)

func TestConformance(t *testing.T) {
	idempotencytest.Run(t, func(t *testing.T) idempotency.Store {
		client, prefix := testenv.Redis(t)
		s, err := New(client, Options{Prefix: prefix})
		require.NoError(t, err)
		return s
	})
}
