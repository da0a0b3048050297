package bus

import (
	"context"
	"errors"
	"log/slog"

	"github.com/ficus-project/ficus/platform/config"
)

// StartEmbedded runs ServeEmbedded in the background and returns once the server is ready:
// for a process that needs a bus of its own for a while (ficus compare, tests). The config
// it returns is cfg with the address the server took (cfg.Embedded.Listen may have port 0),
// for Connect. stop shuts the server down and waits for it; call it once. It fails, with
// the server stopped, when the server cannot start or ctx ends first.
func StartEmbedded(ctx context.Context, cfg config.Events, resolve func(string) string, logger *slog.Logger) (config.Events, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- ServeEmbedded(ctx, cfg, resolve, logger, func(addr string) { ready <- addr }) }()
	select {
	case addr := <-ready:
		cfg.Bus, cfg.Embedded.Listen = "embedded", addr
		return cfg, func() { cancel(); <-done }, nil
	case err := <-done:
		cancel()
		if err == nil {
			err = errors.New("starting embedded bus: it stopped before it was ready")
		}
		return config.Events{}, nil, err
	}
}
