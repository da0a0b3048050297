package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ficus-project/ficus/cmd/ficus/internal/dirlock"
	"github.com/ficus-project/ficus/cmd/ficus/internal/listener"
	"github.com/ficus-project/ficus/cmd/ficus/internal/procnet"
	"github.com/ficus-project/ficus/facade"
	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/platform/config"
)

// upCommand starts every component, each its own process.
func upCommand() *command {
	var path string
	var readyTimeout time.Duration
	return &command{
		name:    "up",
		summary: "seed demo data and start every component in config.yaml, each its own process",
		about: `Seeds demo data into an empty monolith database, starts every component config.yaml names
(the embedded bus, the monolith, the extracted services under services:, the facade), each as
its own process with its log lines prefixed by its name, and prints where to look and a curl
to try. It restarts a component
that dies and stops them all on Ctrl-C.

It watches config.yaml: an edit restarts just the components whose part of it changed, and
says so (a change to monolith.modules restarts the monolith; routes and backends the facade
reloads itself, with no restart); a change of a listen address or of the services it runs
needs ficus up itself restarted, and it says that too.

It refuses to start when another ficus up uses the same data directory (it holds a lock,
data/ficus.lock) or when a port it needs is taken, and names the process holding it. It binds
every port itself before anything starts and hands each component its socket, so a
component that restarts loses no connection: clients wait in the queue meanwhile. A
component that does not become ready within -ready-timeout, or exits before it is ready,
stops everything with the reason and exit status 1.

The admin token ($FICUS_ADMIN_TOKEN, else data/admin.token, else a new one written there) is
shown once, in the banner, and handed only to the facade.`,
		examples: []string{"ficus up", "ficus up -c staging.yaml -ready-timeout 2m"},
		flags: func(fs *flag.FlagSet) {
			configFlag(fs, &path)
			fs.DurationVar(&readyTimeout, "ready-timeout", 60*time.Second, "how long each component may take to become ready")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			if readyTimeout <= 0 {
				return usageError{"ficus up", "-ready-timeout must be positive"}
			}
			return up(ctx, e, path, readyTimeout)
		},
	}
}

// up is ficus up: lock, bind, seed, start, supervise.
func up(ctx context.Context, e env, path string, readyTimeout time.Duration) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the ficus binary: %w", err)
	}

	for _, dir := range stateDirs(cfg) {
		lock, err := dirlock.Acquire(dir)
		if errors.Is(err, dirlock.ErrLocked) {
			return fmt.Errorf("another ficus is using this data: %w; stop it first (Ctrl-C where it runs), or give this one other data paths in %s", err, path)
		}
		if err != nil {
			return err
		}
		defer lock.Release()
	}

	inherited, err := listener.Inherit(e.getenv)
	if err != nil {
		return err
	}
	defer inherited.Close()
	socks, err := bindAll(ctx, cfg, inherited)
	if err != nil {
		return err
	}
	defer socks.close()

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

	token, source, err := facade.AdminToken(cfg, e.getenv)
	if err != nil {
		return err
	}

	comps := components(cfg, path, token, socks)
	s := &supervisor{self: self, w: e.stdout}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := s.startAll(ctx, comps, readyTimeout); err != nil {
		stop()
		s.wait()
		if errors.Is(err, errInterrupted) {
			return nil
		}
		return err
	}
	s.locked(func() {
		printBanner(e.stdout, banner{cfg: cfg, comps: comps, demo: demo, token: token,
			tokenSource: source, self: self})
	})
	// ficus stop and ficus start.
	go func() {
		if err := s.serveControl(ctx, controlSocket(cfg), comps); err != nil {
			s.logLine("up", fmt.Sprintf("ficus stop and ficus start will not reach this ficus up: %v", err))
		}
	}()
	// An edit of config.yaml restarts just the components whose part of it changed.
	go func() {
		if err := s.watchConfig(ctx, path, cfg, comps); err != nil {
			s.logLine("up", fmt.Sprintf("not watching %s (edits apply on the next ficus up): %v", path, err))
		}
	}()
	s.wait()
	return nil
}

// stateDirs are the directories ficus up keeps state in, each locked while it runs: the
// monolith's and the services' SQLite databases', the embedded bus store's parent and the
// admin token file's. With the defaults that is data/ alone.
func stateDirs(cfg *config.Config) []string {
	var dirs []string
	add := func(p string) {
		if p == "" {
			return
		}
		d := filepath.Clean(filepath.Dir(cfg.Resolve(p)))
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	if p, ok := strings.CutPrefix(cfg.Monolith.Database, "sqlite:"); ok {
		add(p)
	}
	for _, name := range services(cfg) {
		if p, ok := strings.CutPrefix(cfg.Services[name].Database, "sqlite:"); ok {
			add(p)
		}
	}
	if cfg.Events.Bus == "embedded" {
		add(strings.TrimRight(cfg.Events.Embedded.Store, "/"))
	}
	add(cfg.Facade.Admin.TokenFile)
	return dirs
}

// socket is a port ficus up holds for a component.
type socket struct {
	name  string // the listener's name for the child: bus, monolith, facade, admin
	field string // the config field that gives its address
	ln    net.Listener
	file  *os.File // the duplicate handed to each incarnation of the child
}

type sockets []*socket

func (ss sockets) get(name string) *socket {
	for _, s := range ss {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (ss sockets) close() {
	for _, s := range ss {
		if s.file != nil {
			s.file.Close()
		}
		s.ln.Close()
	}
}

// bindAll binds every port the components need, before any of them starts, and reports
// every port that is taken at once, naming what holds it.
func bindAll(ctx context.Context, cfg *config.Config, inherited *listener.Set) (sockets, error) {
	want := []struct{ name, field, addr string }{}
	if cfg.Events.Bus == "embedded" {
		want = append(want, struct{ name, field, addr string }{"bus", "events.embedded.listen", cfg.Events.Embedded.Listen})
	}
	want = append(want, struct{ name, field, addr string }{"monolith", "monolith.listen", cfg.Monolith.Listen})
	for _, name := range services(cfg) {
		want = append(want, struct{ name, field, addr string }{name, "services." + name + ".listen", cfg.Services[name].Listen})
	}
	want = append(want,
		struct{ name, field, addr string }{"facade", "facade.listen", cfg.Facade.Listen},
		struct{ name, field, addr string }{"admin", "facade.admin.listen", cfg.Facade.Admin.Listen},
	)
	var ss sockets
	var errs []error
	for _, w := range want {
		ln := inherited.Take(w.name)
		if ln == nil {
			var lc net.ListenConfig
			var err error
			if ln, err = lc.Listen(ctx, "tcp", w.addr); err != nil {
				errs = append(errs, portError(w.field, w.addr, err, ss))
				continue
			}
		}
		s := &socket{name: w.name, field: w.field, ln: ln}
		f, err := listener.File(ln)
		if err != nil {
			ln.Close()
			errs = append(errs, err)
			continue
		}
		s.file = f
		ss = append(ss, s)
	}
	if len(errs) > 0 {
		ss.close()
		return nil, errors.Join(errs...)
	}
	return ss, nil
}

// portError explains why addr could not be bound, naming what holds it when the OS says.
func portError(field, addr string, err error, mine sockets) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s %s: %w", field, addr, err)
	}
	for _, s := range mine {
		if s.ln.Addr().String() == addr {
			return fmt.Errorf("%s %s is also %s in the config: give each component its own port", field, addr, s.field)
		}
	}
	_, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	who := "another process (the OS does not say which; try: ss -ltnp 'sport = :" + portText + "')"
	if p, ok := procnet.Listener("/proc", port); ok {
		who = p.String()
	}
	return fmt.Errorf("%s %s is in use by %s: stop it, or change %s in the config", field, addr, who, field)
}

// component is one process ficus up supervises.
type component struct {
	name string
	args []string
	// env is the process's whole environment.
	env []string
	// files are the listeners it inherits, by name.
	files map[string]*os.File
	// urls say where it serves, for the banner.
	urls []string
	// ready reports whether the component accepts work.
	ready func(ctx context.Context) error

	// exited receives each exit of the process, while someone listens (waitReady).
	exited chan error
	// restartReq asks the running process to stop so that it starts again at once, on the
	// config as it now is (watchConfig).
	restartReq chan struct{}
	// stopReq asks the running process to end with a signal and not to start again until
	// resume (ficus stop); resume is ficus start.
	stopReq chan syscall.Signal
	resume  chan struct{}

	mu sync.Mutex
	// tail keeps its last lines of output, to say why it failed.
	tail []string
	// held is true from ficus stop to ficus start.
	held bool
	// pid is the running process's, 0 between processes.
	pid int
}

func (c *component) remember(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.tail) == 8 {
		c.tail = c.tail[1:]
	}
	c.tail = append(c.tail, line)
}

func (c *component) lastLines() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail, "\n  ")
}

// services lists the extracted services config.yaml configures, in the order ficus up starts
// them.
func services(cfg *config.Config) []string {
	var out []string
	for _, name := range config.Extractable {
		if _, ok := cfg.Services[name]; ok {
			out = append(out, name)
		}
	}
	return out
}

// components lists what ficus up starts, in order: the bus, the monolith, the extracted
// services, the facade (last, so that its health checks find its backends up).
func components(cfg *config.Config, path, token string, socks sockets) []*component {
	// The children inherit this process's environment, less the admin token (only the facade
	// gets it) and the listeners this process took from its own parent.
	base := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, cfg.Facade.Admin.TokenEnv+"=") || strings.HasPrefix(kv, listener.Env+"=")
	})
	files := func(names ...string) map[string]*os.File {
		m := map[string]*os.File{}
		for _, n := range names {
			m[n] = socks.get(n).file
		}
		return m
	}
	addr := func(name string) string { return socks.get(name).ln.Addr().String() }
	var comps []*component
	if s := socks.get("bus"); s != nil {
		comps = append(comps, &component{name: "bus", args: []string{"serve", "bus", "-c", path}, env: base,
			files: files("bus"), urls: []string{"nats://" + addr("bus")}, ready: natsReady(addr("bus"))})
	}
	comps = append(comps, &component{name: "monolith", args: []string{"serve", "monolith", "-c", path}, env: base,
		files: files("monolith"), urls: []string{"http://" + addr("monolith")}, ready: httpReady("http://" + addr("monolith") + "/readyz")})
	for _, name := range services(cfg) {
		comps = append(comps, &component{name: name, args: []string{"serve", name, "-c", path}, env: base,
			files: files(name), urls: []string{"http://" + addr(name)}, ready: httpReady("http://" + addr(name) + "/readyz")})
	}
	comps = append(comps,
		&component{name: "facade", args: []string{"serve", "facade", "-c", path},
			env:   append(slices.Clone(base), cfg.Facade.Admin.TokenEnv+"="+token),
			files: files("facade", "admin"), urls: []string{"http://" + addr("facade"), "http://" + addr("admin")},
			ready: httpReady(facadeAdminURL(addr("admin")) + "/readyz")},
	)
	for _, c := range comps {
		c.exited = make(chan error, 1)
		c.restartReq = make(chan struct{}, 1)
		c.stopReq = make(chan syscall.Signal, 1)
		c.resume = make(chan struct{}, 1)
	}
	return comps
}

// supervisor runs the components' processes, restarts those that die, and writes their
// output, one prefixed line at a time.
type supervisor struct {
	self string
	w    io.Writer
	mu   sync.Mutex // one line at a time from every child
	wg   sync.WaitGroup
}

func (s *supervisor) locked(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

func (s *supervisor) logLine(name, line string) {
	s.locked(func() { fmt.Fprintf(s.w, "%-9s| %s\n", name, line) })
}

// start runs c until ctx is done, restarting it with backoff when it dies.
func (s *supervisor) start(ctx context.Context, c *component) {
	s.wg.Go(func() {
		backoff := 500 * time.Millisecond
		for ctx.Err() == nil {
			c.waitWhileHeld(ctx)
			if ctx.Err() != nil {
				return
			}
			started := time.Now()
			err := s.runChild(ctx, c)
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, errRestart) {
				s.logLine(c.name, "stopped for the config change; starting again")
				continue
			}
			if errors.Is(err, errHeld) {
				s.logLine(c.name, fmt.Sprintf("stopped by ficus stop; not started again until: ficus start %s", c.name))
				continue
			}
			select {
			case c.exited <- err:
			default:
			}
			if time.Since(started) > 30*time.Second {
				backoff = 500 * time.Millisecond
			}
			s.logLine(c.name, fmt.Sprintf("exited (%v); restarting in %s", err, backoff))
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
		}
	})
}

// errInterrupted means ficus up was asked to stop while it was starting the components.
var errInterrupted = errors.New("interrupted")

// errRestart is the exit of a process ficus up stopped to start it again (restart).
var errRestart = errors.New("stopped to restart")

// restart stops c's process (SIGTERM, as at Ctrl-C) and starts it again at once.
func (s *supervisor) restart(c *component) {
	select {
	case c.restartReq <- struct{}{}:
	default: // a restart is already asked for
	}
}

// startAll starts the components one after the other, each once the one before is ready.
// It fails when one exits before it is ready or is not ready within readyTimeout; the
// caller then stops the others by cancelling ctx.
func (s *supervisor) startAll(ctx context.Context, comps []*component, readyTimeout time.Duration) error {
	for _, c := range comps {
		s.start(ctx, c)
		readyCtx, readyDone := context.WithTimeout(ctx, readyTimeout)
		err := s.waitReady(readyCtx, c)
		readyDone()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return errInterrupted
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("%s did not become ready within %s (-ready-timeout); stopped everything: %w", c.name, readyTimeout, err)
		default:
			return fmt.Errorf("%s did not become ready; stopped everything: %w", c.name, err)
		}
	}
	return nil
}

// wait waits for every supervised process to have stopped.
func (s *supervisor) wait() { s.wg.Wait() }

// runChild starts one process and copies its output, prefixed, until it exits. On ctx done
// it sends SIGTERM and, after 10s, SIGKILL.
func (s *supervisor) runChild(ctx context.Context, c *component) error {
	cmd := exec.Command(s.self, c.args...)
	cmd.Env = slices.Clone(c.env)
	listener.Pass(cmd, c.files)
	// Its own process group keeps a terminal's Ctrl-C for ficus up, which stops the children
	// in order; Pdeathsig stops a child whose ficus up died without doing so.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return err
	}
	c.mu.Lock()
	c.pid = cmd.Process.Pid
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.pid = 0
		c.mu.Unlock()
	}()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			c.remember(sc.Text())
			s.logLine(c.name, sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			err = <-done
		}
	}
	select {
	case err = <-done:
	case <-ctx.Done():
		stop()
	case <-c.restartReq:
		stop()
		err = errRestart
	case sig := <-c.stopReq:
		if sig == syscall.SIGKILL {
			_ = cmd.Process.Kill()
			<-done
		} else {
			stop()
		}
		err = errHeld
	}
	pw.Close()
	<-copied
	return err
}

// waitReady polls c until it is ready, ctx is done, or its process exits.
func (s *supervisor) waitReady(ctx context.Context, c *component) error {
	for {
		err := c.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last check: %v", ctx.Err(), err)
		case exit := <-c.exited:
			if last := c.lastLines(); last != "" {
				return fmt.Errorf("it exited (%v); its last lines:\n  %s", exit, last)
			}
			return fmt.Errorf("it exited (%v)", exit)
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

// natsReady checks that a NATS server answers on addr: it greets every client with an INFO
// line. A TCP connect alone proves nothing here, because ficus up holds the port itself and
// the kernel accepts connections into the backlog before any server runs.
func natsReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		conn, err := d.DialContext(dctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		deadline, _ := dctx.Deadline()
		_ = conn.SetReadDeadline(deadline)
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return fmt.Errorf("nats://%s: no greeting: %w", addr, err)
		}
		if !strings.HasPrefix(line, "INFO ") {
			return fmt.Errorf("nats://%s: not a NATS server (it said %.40q)", addr, line)
		}
		return nil
	}
}

// banner is what ficus up prints once everything is ready.
type banner struct {
	cfg         *config.Config
	comps       []*component
	demo        monolith.Demo
	token       string
	tokenSource string
	self        string
}

func printBanner(w io.Writer, b banner) {
	cfg := b.cfg
	var facadeURL, adminURL string
	fmt.Fprintf(w, "\n  Ficus is up. Started %d components, each its own process:\n", len(b.comps))
	for _, c := range b.comps {
		switch c.name {
		case "bus":
			fmt.Fprintf(w, "    bus         %-28s embedded NATS JetStream, store %s\n", c.urls[0], cfg.Resolve(cfg.Events.Embedded.Store))
		case "monolith":
			fmt.Fprintf(w, "    monolith    %-28s database %s\n", c.urls[0], config.Redact(cfg.Monolith.Database))
		case "inventory", "payments":
			fmt.Fprintf(w, "    %-11s %-28s extracted service, database %s\n", c.name, c.urls[0], config.Redact(cfg.Services[c.name].Database))
		case "facade":
			facadeURL, adminURL = c.urls[0], c.urls[1]
			fmt.Fprintf(w, "    facade      %-28s every request goes through here\n", facadeURL)
			fmt.Fprintf(w, "    admin       %-28s dashboard (sign in with the token), /metrics\n", adminURL)
		}
	}
	if cfg.Events.Bus != "embedded" {
		fmt.Fprintf(w, "    events      %s (external, not started here)\n", cfg.Events.Describe())
	}
	if len(services(cfg)) > 0 {
		fmt.Fprintf(w, "  Routes send every path to the monolith until %s moves a capability on (its #1 and #2 lines).\n", cfg.Path)
	}
	tokenShown := b.token
	if strings.HasPrefix(b.tokenSource, "$") {
		tokenShown = b.tokenSource // the person who set it knows it; don't echo it
	}
	fmt.Fprintf(w, "  Admin token (shown only here; also in %s): %s\n", cfg.Resolve(cfg.Facade.Admin.TokenFile), tokenShown)
	if len(b.demo.Customers) > 0 {
		fmt.Fprintln(w, "\n  Demo customers (customer_id for POST /api/orders):")
		for _, p := range b.demo.Customers {
			fmt.Fprintf(w, "    %-18s %s  %s\n", p.Email, p.ID, p.Demonstrates)
		}
		fmt.Fprintln(w, "  Demo items: BOOK-GO-1 (39.99), MUG-FICUS (12.99), STICKER-FIG (1.99), LAMP-RARE (250.00, one in stock)")
	}
	fmt.Fprintf(w, `
  Place an order through the facade:

    curl -s -X POST %s/api/orders \
      -H 'Content-Type: application/json' -H "Idempotency-Key: $(date +%%s%%N)" \
      -d '{"customer_id":"%s","lines":[{"sku":"%s","quantity":1}]}'

  Items:  curl -s %s/api/inventory/items
  Routes: %s routes -c %s
  Events: %s events tail -all -c %s
  Look:   %s/ (the dashboard: sign in with the admin token)
  Stop:   Ctrl-C
`, facadeURL, b.demo.CustomerID, b.demo.SKU, facadeURL, b.self, cfg.Path, b.self, cfg.Path, adminURL)
}
