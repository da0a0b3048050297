package monolith_test

import (
	"testing"

	"github.com/ficus-project/ficus/platform/store/storetest"
)

// TestPostgres runs the shop's suite on PostgreSQL: the same HTTP contract, the same
// concurrency guarantees (TestConcurrentOrdersNeverOversell) and the same events.
func TestPostgres(t *testing.T) {
	storetest.Postgres(t,
		TestPlaceOrderHappyPath, TestErrors, TestFailedOrderLeavesNoTrace, TestConcurrentOrdersNeverOversell,
		TestModuleHandlesRefuseOtherModulesTables, TestIdempotentOrdersAndPayments,
		TestEmittedEventsMatchTheirSchemas, TestConcurrentChargesNeverOvercharge,
	)
}
