package dlq_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqtest"
)

func TestMemoryStoreConformance(t *testing.T) {
	dlqtest.Run(t, func(t *testing.T, maxEntries int) dlq.Store {
		s, err := dlq.NewMemoryStore(dlq.MemoryOptions{MaxEntries: maxEntries})
		require.NoError(t, err)
		return s
	})
}
