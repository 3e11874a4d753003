package stockpg_test

import (
	"testing"

	"github.com/idemq/idemq/stock"
	"github.com/idemq/idemq/stock/stockpg"
	"github.com/idemq/idemq/stock/stocktest"
)

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shards int
	}{
		{"Unsharded", 0},
		{"Sharded", 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stocktest.Run(t, func(t *testing.T) stock.Store {
				s, _ := newStore(t, stockpg.Options{Shards: tc.shards})
				return s
			})
		})
	}
}
