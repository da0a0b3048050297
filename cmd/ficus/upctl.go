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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/web"
)

// ficus up answers `ficus stop` and `ficus start` on a Unix socket in its data directory,
// beside its lock: only a user who can read that directory can reach it, and it needs no
// port or token of its own. The protocol is HTTP: POST /stop?name=N&signal=KILL|TERM and
// POST /start?name=N, answered with one line of text.

// controlSocketName is the control socket's file name in ficus up's first state directory.
const controlSocketName = "ficus.sock"

// controlSocket is where ficus up, run on cfg, listens for stop and start.
func controlSocket(cfg *config.Config) string {
	dirs := stateDirs(cfg)
	if len(dirs) == 0 {
		return filepath.Join(filepath.Dir(cfg.Resolve("config.yaml")), controlSocketName)
	}
	return filepath.Join(dirs[0], controlSocketName)
}

// errHeld is the exit of a process an operator stopped with ficus stop.
var errHeld = errors.New("stopped by ficus stop")

// hold marks c stopped by an operator and asks its process to end with sig.
func (c *component) hold(sig syscall.Signal) {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
	select {
	case c.stopReq <- sig:
	default: // a stop is already asked for
	}
}

// release lets c run again.
func (c *component) release() {
	c.mu.Lock()
	c.held = false
	c.mu.Unlock()
	select {
	case c.resume <- struct{}{}:
	default:
	}
}

func (c *component) isHeld() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

func (c *component) runningPID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pid
}

// waitWhileHeld returns once c may run: at once unless an operator stopped it.
func (c *component) waitWhileHeld(ctx context.Context) {
	for c.isHeld() && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-c.resume:
		}
	}
	// A stop or restart asked for while nothing ran is void: the process starts now, on the
	// config as it is.
	select {
	case <-c.restartReq:
	default:
	}
	if !c.isHeld() {
		select {
		case <-c.stopReq:
		default:
		}
	}
}

// serveControl answers ficus stop and ficus start on the socket at path until ctx is done.
func (s *supervisor) serveControl(ctx context.Context, path string, comps []*component) error {
	// ficus up holds the directory's lock, so a socket file left there is a dead run's.
	_ = os.Remove(path)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	byName := map[string]*component{}
	var names []string
	for _, c := range comps {
		byName[c.name] = c
		names = append(names, c.name)
	}
	find := func(w http.ResponseWriter, r *http.Request) *component {
		c := byName[r.URL.Query().Get("name")]
		if c == nil {
			http.Error(w, fmt.Sprintf("no component %q: ficus up runs %s", r.URL.Query().Get("name"), strings.Join(names, ", ")), http.StatusNotFound)
		}
		return c
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		c := find(w, r)
		if c == nil {
			return
		}
		sig, signame := syscall.SIGTERM, "SIGTERM"
		if r.URL.Query().Get("signal") == "KILL" {
			sig, signame = syscall.SIGKILL, "SIGKILL"
		}
		if c.isHeld() && c.runningPID() == 0 {
			fmt.Fprintf(w, "%s is already stopped; ficus start %s starts it again\n", c.name, c.name)
			return
		}
		pid := c.runningPID()
		s.logLine("up", fmt.Sprintf("ficus stop %s: sending %s", c.name, signame))
		c.hold(sig)
		// SIGTERM gives the process 10s to drain before ficus up kills it.
		deadline := time.Now().Add(15 * time.Second)
		for c.runningPID() != 0 {
			if time.Now().After(deadline) || r.Context().Err() != nil {
				http.Error(w, fmt.Sprintf("%s (PID %d) has not exited yet", c.name, pid), http.StatusGatewayTimeout)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		fmt.Fprintf(w, "%s stopped (%s to PID %d); ficus up keeps its port and will not start it again until: ficus start %s\n", c.name, signame, pid, c.name)
	})
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		c := find(w, r)
		if c == nil {
			return
		}
		if !c.isHeld() {
			http.Error(w, fmt.Sprintf("%s was not stopped with ficus stop (PID %d runs it)", c.name, c.runningPID()), http.StatusConflict)
			return
		}
		s.logLine("up", fmt.Sprintf("ficus start %s", c.name))
		c.release()
		if err := s.waitReady(r.Context(), c); err != nil {
			http.Error(w, fmt.Sprintf("%s started but is not ready: %v", c.name, err), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%s started (PID %d) and ready at %s\n", c.name, c.runningPID(), strings.Join(c.urls, ", "))
	})
	srv := web.NewServer(mux, web.ServerOptions{})
	go func() {
		<-ctx.Done()
		srv.Close()
		os.Remove(path)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	return nil
}

// controlCommand is ficus stop or ficus start: one request to the running ficus up.
func controlCommand(name string) *command {
	var path string
	var kill bool
	var timeout time.Duration
	c := &command{
		name: name,
		args: "COMPONENT",
		nargs: func(args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("takes one COMPONENT (bus, monolith, inventory, payments, facade), got %d arguments", len(args))
			}
			return nil
		},
		run: func(ctx context.Context, e env, args []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			q := "name=" + args[0]
			if kill {
				q += "&signal=KILL"
			}
			return controlRequest(ctx, e.stdout, controlSocket(cfg), "/"+name+"?"+q, timeout)
		},
	}
	if name == "stop" {
		c.summary = "stop one component ficus up runs, until ficus start (a drill: what happens when it is gone)"
		c.about = `Asks the ficus up running on the config to stop one of its components — SIGTERM, or
SIGKILL with -kill — and not to start it again until ficus start COMPONENT. It returns once the
process has exited. ficus up keeps the component's port bound meanwhile, so a client's
connection is accepted and then waits unanswered until its own timeout (as with a hung host),
rather than being refused; what the facade's breakers, health checks and fallbacks and the
monolith's sagas do about it is what the drill is for.

It talks to ficus up over the Unix socket ficus.sock in ficus up's data directory (beside
ficus.lock): no port, no token; whoever can use the data directory can use it.`
		c.examples = []string{"ficus stop -kill inventory", "ficus stop -c staging.yaml payments"}
		c.flags = func(fs *flag.FlagSet) {
			configFlag(fs, &path)
			fs.BoolVar(&kill, "kill", false, "SIGKILL instead of SIGTERM: no draining, as when a host dies")
			fs.DurationVar(&timeout, "timeout", 20*time.Second, "how long to wait for ficus up's answer")
		}
	} else {
		c.summary = "start again a component that ficus stop stopped, and wait until it is ready"
		c.about = `Asks the ficus up running on the config to start again a component that ficus stop
stopped, and waits until it is ready (its /readyz answers, or the bus accepts connections).
Requests that waited on its port meanwhile are served, if their clients are still there.`
		c.examples = []string{"ficus start inventory"}
		c.flags = func(fs *flag.FlagSet) {
			configFlag(fs, &path)
			fs.DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait for the component to be ready")
		}
	}
	return c
}

// controlRequest sends one request to ficus up's control socket and prints its answer.
func controlRequest(ctx context.Context, w io.Writer, sock, target string, timeout time.Duration) error {
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://ficus-up"+target, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("no ficus up runs on this config (no control socket at %s): start it with ficus up", sock)
		}
		return fmt.Errorf("asking ficus up (%s): %w", sock, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	if err != nil {
		return fmt.Errorf("reading ficus up's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New(strings.TrimSpace(string(body)))
	}
	_, err = w.Write(body)
	return err
}
