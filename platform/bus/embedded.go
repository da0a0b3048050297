package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ficus-project/ficus/platform/config"
)

// ServeEmbedded runs a NATS server with JetStream in this process until ctx is done, listening
// on cfg.Embedded.Listen (port 0 picks a free port) and storing streams under
// cfg.Embedded.Store, resolved with resolve when it is relative. It creates the event streams,
// then calls ready, if not nil, with the address clients connect to. It refuses an external
// bus: there is nothing to serve.
func ServeEmbedded(ctx context.Context, cfg config.Events, resolve func(string) string, logger *slog.Logger, ready func(addr string)) error {
	if cfg.Bus != "" && cfg.Bus != "embedded" {
		return fmt.Errorf("serving embedded bus: events.bus is %s, an external server", config.Redact(cfg.Bus))
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	listen := cfg.Embedded.Listen
	if listen == "" {
		listen = "127.0.0.1:4222"
	}
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("serving embedded bus: listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("serving embedded bus: listen port %q: %w", portText, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	dir := cfg.Embedded.Store
	if dir == "" {
		dir = "data/nats"
	}
	if resolve != nil {
		dir = resolve(dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("serving embedded bus: creating store: %w", err)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "ficus",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
	})
	if err != nil {
		return fmt.Errorf("serving embedded bus: %w", err)
	}
	srv.SetLoggerV2(serverLogger{logger}, false, false, false)
	srv.Start()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !srv.ReadyForConnections(30 * time.Second) {
		return errors.New("serving embedded bus: server not ready after 30s")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("ficus-embedded-setup"))
	if err != nil {
		return fmt.Errorf("serving embedded bus: %w", err)
	}
	js, err := jetstream.New(nc)
	if err == nil {
		err = ensureStreams(ctx, js, cfg)
	}
	nc.Close()
	if err != nil {
		return fmt.Errorf("serving embedded bus: %w", err)
	}
	addr := srv.Addr().String()
	logger.Info("embedded bus ready", "addr", addr, "store", dir)
	if ready != nil {
		ready(addr)
	}
	<-ctx.Done()
	logger.Info("embedded bus stopping")
	return nil
}

// serverLogger writes the NATS server's log through slog.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Info(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
