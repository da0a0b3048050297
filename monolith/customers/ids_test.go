package customers

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
)

// TestCreateWithoutAnIDIsAnError: a failing id source is an error for the caller, never a
// panic on a request path.
func TestCreateWithoutAnIDIsAnError(t *testing.T) {
	broken := errors.New("no entropy")
	s := &Service{newID: func() (uuid.UUID, error) { return uuid.UUID{}, broken }}
	limit := int64(1)
	_, err := s.Create(context.Background(), NewCustomer{Name: "Ada", Email: "ada@example.com", CreditLimitCents: &limit})
	if !errors.Is(err, broken) {
		t.Fatalf("Create = %v, want the id source's error", err)
	}
}
