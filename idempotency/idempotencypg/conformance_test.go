package idempotencypg_test

import (
	"testing"

	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/idempotency/idempotencytest"
)

func TestConformance(t *testing.T) {
	idempotencytest.Run(t, func(t *testing.T) idempotency.Store {
		s, _ := newStore(t)
		return s
	})
}
