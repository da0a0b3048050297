package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
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
//
// The server's own startup notices (its banner, some 25 lines) are logged at debug level;
// warnings and errors at theirs.
func ServeEmbedded(ctx context.Context, cfg config.Events, resolve func(string) string, logger *slog.Logger, ready func(addr string)) error {
	return serveEmbedded(ctx, nil, cfg, resolve, logger, ready)
}

// ServeEmbeddedOn is ServeEmbedded on a listener the caller already holds, for example one a
// parent process bound and passed down so that the port stays bound while this server
// restarts. cfg.Embedded.Listen is then ignored. Each connection accepted on ln is handed to
// the server as an in-process connection. ServeEmbeddedOn closes ln when it returns.
func ServeEmbeddedOn(ctx context.Context, ln net.Listener, cfg config.Events, resolve func(string) string, logger *slog.Logger, ready func(addr string)) error {
	if ln == nil {
		return errors.New("serving embedded bus: no listener")
	}
	defer ln.Close()
	return serveEmbedded(ctx, ln, cfg, resolve, logger, ready)
}

func serveEmbedded(ctx context.Context, ln net.Listener, cfg config.Events, resolve func(string) string, logger *slog.Logger, ready func(addr string)) error {
	if cfg.Bus != "" && cfg.Bus != "embedded" {
		return fmt.Errorf("serving embedded bus: events.bus is %s, an external server", config.Redact(cfg.Bus))
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	listen := cfg.Embedded.Listen
	if ln != nil {
		listen = ln.Addr().String()
	}
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
		// With a listener of our own the server accepts nothing itself: bridge feeds it.
		DontListen: ln != nil,
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
	var addr string
	if ln != nil {
		addr = ln.Addr().String()
		bridged := make(chan struct{})
		go func() {
			defer close(bridged)
			bridge(ln, srv, logger)
		}()
		// Shutting the server down ends the bridged connections; closing ln ends bridge.
		defer func() { ln.Close(); <-bridged }()
	} else {
		addr = srv.Addr().String()
	}
	logger.Info("embedded bus ready", "addr", addr, "store", dir)
	if ready != nil {
		ready(addr)
	}
	<-ctx.Done()
	logger.Info("embedded bus stopping")
	return nil
}

// bridge accepts connections on ln and hands each to srv as an in-process connection,
// copying bytes both ways, until ln is closed.
func bridge(ln net.Listener, srv *server.Server, logger *slog.Logger) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				logger.Error("embedded bus: accepting connections", "err", err)
			}
			return
		}
		inner, err := srv.InProcessConn()
		if err != nil {
			logger.Warn("embedded bus: refusing a connection", "err", err)
			conn.Close()
			continue
		}
		go splice(conn, inner)
	}
}

// splice copies between a and b until either side ends, then closes both.
func splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}

// serverLogger writes the NATS server's log through slog. Its notices (the startup banner,
// listening addresses, JetStream settings) go to debug: the components log their own one-line
// readiness, and FICUS_LOG=debug shows the server's detail when it is wanted.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
