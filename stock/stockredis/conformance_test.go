package stockredis

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/internal/testenv"
	"github.com/idemq/idemq/stock"
	"github.com/idemq/idemq/stock/stocktest"
)

func TestConformance(t *testing.T) {
	stocktest.Run(t, func(t *testing.T) stock.Store {
		client, prefix := testenv.Redis(t)
		s, err := New(client, Options{Prefix: prefix})
		require.NoError(t, err)
		return s
	})
}
