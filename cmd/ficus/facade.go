package main

import (
	"context"
	"errors"
	"io"
)

// cmdServeFacade is a placeholder until the facade lands.
func cmdServeFacade(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return errors.New("the facade is not built yet")
}

// cmdRoutes is a placeholder until the facade lands.
func cmdRoutes(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return errors.New("the facade is not built yet")
}
