package payments

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
)

// TestChargeWithoutAnIDIsAnError: a failing id source is an error for the caller, never a
// panic on a request path.
func TestChargeWithoutAnIDIsAnError(t *testing.T) {
	broken := errors.New("no entropy")
	s := &Service{newID: func() (uuid.UUID, error) { return uuid.UUID{}, broken }}
	amount := int64(100)
	_, err := s.Charge(context.Background(), Charge{CustomerID: "c", AmountCents: &amount, Reference: "r"})
	if !errors.Is(err, broken) {
		t.Fatalf("Charge = %v, want the id source's error", err)
	}
}
