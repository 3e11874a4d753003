package stockpg_test

import (
	"testing"

	"github.com/idemq/idemq/stock"
	"github.com/idemq/idemq/stock/stocktest"
)

func TestConformance(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			stocktest.Run(t, func(t *testing.T) stock.Store {
				s, _ := newStore(t, m.opts())
				return s
			})
		})
	}
}
