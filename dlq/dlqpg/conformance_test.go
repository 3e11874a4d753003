package dlqpg_test

import (
	"testing"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqpg"
	"github.com/idemq/idemq/dlq/dlqtest"
)

func TestConformance(t *testing.T) {
	dlqtest.Run(t, func(t *testing.T, maxEntries int) dlq.Store {
		s, _ := newStore(t, dlqpg.Options{MaxEntries: maxEntries})
		return s
	})
}
