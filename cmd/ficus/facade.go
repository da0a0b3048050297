package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ficus-project/ficus/facade"
	"github.com/ficus-project/ficus/platform/config"
)

// cmdServeFacade runs the strangler-fig facade: `ficus serve facade [-c config.yaml]
// [-listen ADDR] [-admin ADDR]`. It serves until ctx is done, reloads the config when the
// file changes or on SIGHUP, then drains requests in flight (10s at most).
func cmdServeFacade(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve facade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "config.yaml", "config file")
	listen := fs.String("listen", "", "facade address (default: facade.listen from the config)")
	adminAddr := fs.String("admin", "", "admin address (default: facade.admin.listen from the config)")
	if err := fs.Parse(args); err != nil {
		return usageError{}
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return fmt.Errorf("loading config: %w", err)
	}
	log := newLogger(stderr, getenv).With("component", "facade")
	f, err := facade.New(cfg, facade.Options{Logger: log, Getenv: getenv})
	if err != nil {
		return fmt.Errorf("starting the facade: %w", err)
	}
	if *listen == "" {
		*listen = cfg.Facade.Listen
	}
	if *adminAddr == "" {
		*adminAddr = cfg.Facade.Admin.Listen
	}
	var lc net.ListenConfig
	proxyLn, err := lc.Listen(ctx, "tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening for the facade: %w", err)
	}
	adminLn, err := lc.Listen(ctx, "tcp", *adminAddr)
	if err != nil {
		proxyLn.Close()
		return fmt.Errorf("listening for the admin API: %w", err)
	}
	fmt.Fprintf(stdout, "facade listening on http://%s\n", proxyLn.Addr())
	fmt.Fprintf(stdout, "admin listening on http://%s\n", adminLn.Addr())
	log.Info("facade listening", "addr", proxyLn.Addr().String(), "admin", adminLn.Addr().String(), "config", *path)

	wctx, stopWatching := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopWatching()
		wg.Wait()
	}()
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := f.Watch(wctx, *path); err != nil {
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
				log.Info("SIGHUP: reloading config", "path", *path)
				_ = f.ReloadFile(*path) // the outcome is logged, counted and on /api/reload
			}
		}
	}()
	return f.Serve(ctx, proxyLn, adminLn)
}

// cmdRoutes prints the live route table of a running facade: `ficus routes [-c
// config.yaml] [-admin URL]`. The admin URL defaults to facade.admin.listen from the config;
// the token is read from the variable facade.admin.token_env names.
func cmdRoutes(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("routes", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "config.yaml", "config file (for the admin address and token variable)")
	adminURL := fs.String("admin", "", "admin API URL (default: http://facade.admin.listen from the config)")
	if err := fs.Parse(args); err != nil {
		return usageError{}
	}
	tokenEnv := "FICUS_ADMIN_TOKEN"
	cfg, err := config.Load(*path)
	switch {
	case err == nil:
		tokenEnv = cfg.Facade.Admin.TokenEnv
		if *adminURL == "" {
			*adminURL = facadeAdminURL(cfg.Facade.Admin.Listen)
		}
	case *adminURL == "":
		return fmt.Errorf("finding the admin address (or pass -admin URL): %w", err)
	case !errors.Is(err, os.ErrNotExist):
		fmt.Fprintf(stderr, "warning: %v\n", err)
	}
	token := getenv(tokenEnv)
	if token == "" {
		return fmt.Errorf("the admin token variable %s is empty", tokenEnv)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	table, err := facade.FetchRoutes(ctx, &http.Client{}, *adminURL, token)
	if err != nil {
		return err
	}
	return facade.WriteRoutes(stdout, table)
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
