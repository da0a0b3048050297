package main

import (
	"context"
	"errors"
	"io"
)

// cmdEvents is replaced by the events implementation.
func cmdEvents(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return errors.New("events are not built yet")
}

// cmdServeBus is replaced by the events implementation.
func cmdServeBus(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return errors.New("events are not built yet")
}
