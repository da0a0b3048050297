package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/ficus-project/ficus/cmd/ficus/internal/listener"
	"github.com/ficus-project/ficus/facade"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/dryrun"
)

// facadeGCPercent is the garbage collector's target for `ficus serve facade` when GOGC is not
// set. The facade's live heap is a few MB and nearly everything it allocates lives for one
// request, so at the runtime's 100 it collects some 30–40 times a second under load, for
// about 6% of its CPU; at 400 collecting costs about 1%, for about 10 MB more RSS. A library
// must not change a process-wide setting, so the command does (see docs/bench.md).
const facadeGCPercent = 400

// serveFacadeCommand runs the strangler-fig facade.
func serveFacadeCommand() *command {
	var path, listenAddr, adminAddr string
	return &command{
		name:    "facade",
		summary: "the routing facade and its admin API",
		about: `Runs the strangler-fig facade: it routes each request to the backend config.yaml names, and
serves the admin API (route table, breakers, /metrics) on a second listener. A change to the
config file, or SIGHUP, reloads the routes without a restart; a broken edit is refused and
the last good config keeps serving. On SIGINT or SIGTERM it drains requests in flight (10s
at most).

The admin bearer token is $FICUS_ADMIN_TOKEN (facade.admin.token_env), else the contents of
facade.admin.token_file (default data/admin.token), else a new random token written to that
file (mode 0600). It is never logged. Unless GOGC is set, the garbage collector's target is
400.`,
		examples: []string{"ficus serve facade", "ficus serve facade -listen 127.0.0.1:18080 -admin 127.0.0.1:19900"},
		flags: func(fs *flag.FlagSet) {
			configFlag(fs, &path)
			fs.StringVar(&listenAddr, "listen", "", "facade `ADDR` (default: facade.listen from the config)")
			fs.StringVar(&adminAddr, "admin", "", "admin API `ADDR` (default: facade.admin.listen from the config)")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			return serveFacade(ctx, e, path, listenAddr, adminAddr)
		},
	}
}

func serveFacade(ctx context.Context, e env, path, listenAddr, adminAddr string) error {
	if e.getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(facadeGCPercent))
	}
	inherited, err := listener.Inherit(e.getenv)
	if err != nil {
		return err
	}
	defer inherited.Close()
	cfg, err := config.Load(path)
	if err != nil {
		return fmt.Errorf("loading config: %w", err)
	}
	log := newLogger(e.stderr, e.getenv).With("component", "facade")
	token, source, err := facade.AdminToken(cfg, e.getenv)
	if err != nil {
		return err
	}
	// The secret that signs shadowed writes for the services, and the contract's operations,
	// which name the endpoints of shadow reports.
	secret, secretSource, err := dryrun.LoadSecret(cfg, e.getenv)
	if err != nil {
		return err
	}
	log.Info("dry-run secret loaded", "source", secretSource)
	v, err := contract.NewValidator()
	if err != nil {
		return err
	}
	if listenAddr == "" {
		listenAddr = cfg.Facade.Listen
	}
	if adminAddr == "" {
		adminAddr = cfg.Facade.Admin.Listen
	}
	proxyLn, err := listen(ctx, inherited, "facade", listenAddr)
	if err != nil {
		return err
	}
	adminLn, err := listen(ctx, inherited, "admin", adminAddr)
	if err != nil {
		proxyLn.Close()
		return err
	}
	// The dashboard's outbox, saga and migration panels read the databases config.yaml names.
	system := newSystemReader()
	defer system.Close()
	// The facade is named by its address and process in the comment an automatic canary
	// rollback writes to config.yaml, so an operator knows which of N facades decided it.
	f, err := facade.New(cfg, facade.Options{Logger: log, AdminToken: token, AdminTokenSource: source,
		DryRunSecret: secret, Endpoints: v.Operations(), System: system,
		Instance: fmt.Sprintf("%s pid %d", proxyLn.Addr(), os.Getpid())})
	if err != nil {
		proxyLn.Close()
		adminLn.Close()
		return fmt.Errorf("starting the facade: %w", err)
	}
	fmt.Fprintf(e.stdout, "facade listening on http://%s\n", proxyLn.Addr())
	fmt.Fprintf(e.stdout, "admin listening on http://%s\n", adminLn.Addr())
	log.Info("facade listening", "addr", proxyLn.Addr().String(), "admin", adminLn.Addr().String(), "config", path)

	wctx, stopWatching := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopWatching()
		wg.Wait()
	}()
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := f.Watch(wctx, path); err != nil {
			log.Error("config changes will not be picked up; SIGHUP still reloads", "err", err)
		}
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-wctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading config", "path", path)
				_ = f.ReloadFile(path) // the outcome is logged, counted and on /api/reload
			}
		}
	}()
	return f.Serve(ctx, proxyLn, adminLn)
}

// routesCommand prints the live route table of a running facade.
func routesCommand() *command {
	var path, adminURL string
	var timeout time.Duration
	return &command{
		name:    "routes",
		summary: "print the running facade's live route table",
		about: `Prints the running facade's live route table from its admin API: each route's match,
backend, fallback, shadow and canary, and its backends' breaker states.

The admin address is facade.admin.listen from the config unless -admin says otherwise. The
token is $FICUS_ADMIN_TOKEN (the variable facade.admin.token_env names), else the contents of
facade.admin.token_file (default data/admin.token, written by ficus up or ficus serve facade
when they generate one; the ficus up banner shows it too).`,
		examples: []string{"ficus routes", "ficus routes -admin http://10.0.0.5:9900"},
		flags: func(fs *flag.FlagSet) {
			configFlag(fs, &path)
			fs.StringVar(&adminURL, "admin", "", "admin API `URL` (default: http:// and facade.admin.listen from the config)")
			fs.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the admin API")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			cfg, err := config.Load(path)
			switch {
			case err == nil:
			case adminURL == "":
				return fmt.Errorf("finding the admin address (or pass -admin URL): %w", err)
			default:
				if !errors.Is(err, os.ErrNotExist) {
					fmt.Fprintf(e.stderr, "warning: %v\n", err)
				}
				// The token variable and file are then the defaults'.
				if cfg, err = config.Parse(path, []byte("backends: { any: { url: \"http://127.0.0.1:1\" } }\nroutes: [{ match: { path: / }, to: any }]\n")); err != nil {
					return err
				}
			}
			if adminURL == "" {
				adminURL = facadeAdminURL(cfg.Facade.Admin.Listen)
			}
			token, source, err := facade.ReadAdminToken(cfg, e.getenv)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			table, err := facade.FetchRoutes(ctx, &http.Client{}, adminURL, token)
			if err != nil {
				return fmt.Errorf("%w (admin API %s, token from %s)", err, adminURL, source)
			}
			return facade.WriteRoutes(e.stdout, table)
		},
	}
}

// facadeAdminURL turns a listen address into a URL to reach it, using loopback for an
// unspecified host.
func facadeAdminURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
