package idempotency_test

import (
	"testing"

	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/idempotency/idempotencytest"
)

func TestMemoryStoreConformance(t *testing.T) {
	idempotencytest.Run(t, func(*testing.T) idempotency.Store {
		return idempotency.NewMemoryStore()
	})
}
