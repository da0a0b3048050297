package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/platform/config"
)

// component is one process ficus up supervises.
type component struct {
	name string
	args []string
	// env is added to the process's environment.
	env []string
	// ready reports whether the component accepts work.
	ready func(ctx context.Context) error
}

// cmdUp seeds demo data, starts every component as its own process with prefixed logs,
// prints where to look, restarts a component that dies, and stops them all on interrupt.
func cmdUp(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "config.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return usageError{}
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the ficus binary: %w", err)
	}

	m, err := monolith.New(ctx, cfg, nil)
	if err != nil {
		return err
	}
	demo, err := m.Seed(ctx)
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}

	// Every component gets the admin token; one is made up when the environment has none,
	// so the admin API is never open, and the banner says what it is.
	token := getenv(cfg.Facade.Admin.TokenEnv)
	if token == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("making an admin token: %w", err)
		}
		token = hex.EncodeToString(b[:])
	}
	env := []string{cfg.Facade.Admin.TokenEnv + "=" + token}

	var comps []component
	if cfg.Events.Bus == "embedded" {
		comps = append(comps, component{name: "bus", args: []string{"serve", "bus", "-c", *path}, env: env, ready: tcpReady(cfg.Events.Embedded.Listen)})
	}
	comps = append(comps,
		component{name: "monolith", args: []string{"serve", "monolith", "-c", *path}, env: env, ready: httpReady("http://" + cfg.Monolith.Listen + "/readyz")},
		component{name: "facade", args: []string{"serve", "facade", "-c", *path}, env: env, ready: httpReady("http://" + cfg.Facade.Admin.Listen + "/readyz")},
	)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out sync.Mutex // one line at a time from every child
	var wg sync.WaitGroup
	for _, c := range comps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			supervise(ctx, self, c, &out, stdout)
		}()
		readyCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := waitReady(readyCtx, c)
		cancel()
		if err != nil {
			interrupted := ctx.Err() != nil
			cancel()
			wg.Wait()
			if interrupted {
				return nil
			}
			return fmt.Errorf("%s did not become ready: %w", c.name, err)
		}
	}
	out.Lock()
	printBanner(stdout, cfg, demo, token, self)
	out.Unlock()
	wg.Wait()
	return nil
}

func printBanner(w io.Writer, cfg *config.Config, demo monolith.Demo, token, self string) {
	facade := "http://" + cfg.Facade.Listen
	fmt.Fprintf(w, `
  Ficus is up.
    facade      %s        (every request goes through here)
    admin       http://%s  (Authorization: Bearer %s)
    monolith    http://%s
    events      %s
  Place an order through the facade:

    curl -s -X POST %s/api/orders \
      -H 'Content-Type: application/json' -H "Idempotency-Key: $(date +%%s%%N)" \
      -d '{"customer_id":"%s","lines":[{"sku":"%s","quantity":1}]}'

  Items:  curl -s %s/api/inventory/items
  Routes: %s=%s %s routes -c %s
  Stop:   Ctrl-C
`, facade, cfg.Facade.Admin.Listen, token, cfg.Monolith.Listen, busName(cfg), facade, demo.CustomerID, demo.SKU, facade,
		cfg.Facade.Admin.TokenEnv, token, self, cfg.Path)
}

func busName(cfg *config.Config) string {
	if cfg.Events.Bus == "embedded" {
		return "nats://" + cfg.Events.Embedded.Listen + " (embedded JetStream)"
	}
	return cfg.Events.Bus
}

// supervise runs c until ctx is done, restarting it with backoff when it dies.
func supervise(ctx context.Context, self string, c component, out *sync.Mutex, w io.Writer) {
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		started := time.Now()
		err := runChild(ctx, self, c, out, w)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 30*time.Second {
			backoff = 500 * time.Millisecond
		}
		logLine(out, w, c.name, fmt.Sprintf("exited (%v); restarting in %s", err, backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// runChild starts one process and copies its output, prefixed, until it exits. On ctx done
// it sends SIGTERM and, after 10s, SIGKILL.
func runChild(ctx context.Context, self string, c component, out *sync.Mutex, w io.Writer) error {
	cmd := exec.Command(self, c.args...)
	cmd.Env = append(os.Environ(), c.env...)
	// Its own process group keeps a terminal's Ctrl-C for ficus up, which stops the children
	// in order; Pdeathsig stops a child whose ficus up died without doing so.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return err
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			logLine(out, w, c.name, sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			err = <-done
		}
	}
	pw.Close()
	<-copied
	return err
}

func logLine(out *sync.Mutex, w io.Writer, name, line string) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(w, "%-9s| %s\n", name, line)
}

func waitReady(ctx context.Context, c component) error {
	for {
		err := c.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func httpReady(url string) func(context.Context) error {
	client := &http.Client{Timeout: time.Second}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}

func tcpReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
}
