package dlqredis

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqtest"
	"github.com/idemq/idemq/internal/testenv"
)

func TestConformance(t *testing.T) {
	dlqtest.Run(t, func(t *testing.T, maxEntries int) dlq.Store {
		client, prefix := testenv.Redis(t)
		s, err := New(client, Options{Prefix: prefix, MaxEntries: maxEntries})
		require.NoError(t, err)
		return s
	})
}
