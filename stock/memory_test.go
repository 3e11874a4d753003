package stock_test

import (
	"testing"

	"github.com/idemq/idemq/stock"
	"github.com/idemq/idemq/stock/stocktest"
)

func TestMemoryStoreConformance(t *testing.T) {
	stocktest.Run(t, func(*testing.T) stock.Store {
		return stock.NewMemoryStore()
	})
}
