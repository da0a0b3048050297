package orders

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
)

// TestPlaceWithoutAnIDIsAnError: a failing id source is an error for the caller, never a
// panic on a request path.
func TestPlaceWithoutAnIDIsAnError(t *testing.T) {
	broken := errors.New("no entropy")
	s := &Service{newID: func() (uuid.UUID, error) { return uuid.UUID{}, broken }}
	_, err := s.Place(context.Background(), PlaceOrder{CustomerID: "c", Lines: []RequestLine{{SKU: "A", Quantity: 1}}})
	if !errors.Is(err, broken) {
		t.Fatalf("Place = %v, want the id source's error", err)
	}
}
