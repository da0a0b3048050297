package facade

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// restartable is a backend on a fixed loopback port that can be killed hard, as kill -9
// would (its listener closed, its connections reset), and started again on the same port.
type restartable struct {
	t    *testing.T
	addr string

	mu    sync.Mutex
	srv   *http.Server
	ln    net.Listener
	conns map[net.Conn]bool
}

func startRestartable(t *testing.T) *restartable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &restartable{t: t, addr: ln.Addr().String()}
	r.serve(ln)
	t.Cleanup(r.kill)
	return r
}

func (r *restartable) URL() string { return "http://" + r.addr }

func (r *restartable) serve(ln net.Listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ln, r.conns = ln, map[net.Conn]bool{}
	r.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { io.WriteString(w, "ok") }),
		ConnState: func(c net.Conn, s http.ConnState) {
			r.mu.Lock()
			defer r.mu.Unlock()
			if s == http.StateClosed || s == http.StateHijacked {
				delete(r.conns, c)
			} else if r.conns != nil {
				r.conns[c] = true
			}
		},
	}
	go r.srv.Serve(ln)
}

// kill closes the listener and resets every connection, without a goodbye.
func (r *restartable) kill() {
	r.mu.Lock()
	if r.srv == nil {
		r.mu.Unlock()
		return
	}
	r.ln.Close()
	for c := range r.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST, as a killed process's connections get
		}
		c.Close()
	}
	srv := r.srv
	r.srv, r.conns = nil, nil
	r.mu.Unlock()
	srv.Close()
}

// restart listens on the same port again; it returns once the backend accepts connections.
func (r *restartable) restart() {
	deadline := time.Now().Add(2 * time.Second)
	for {
		ln, err := net.Listen("tcp", r.addr)
		if err == nil {
			r.serve(ln)
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			r.t.Fatalf("restarting the backend on %s: %v", r.addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestShortBackendRestartCostsSeconds kills the only backend under steady load and brings
// it back half a second later, with the default breaker and health check settings: 2xx
// answers resume within 3s of the backend being ready (not after a 30s open breaker), and
// the thousands of failed requests meanwhile cost a bounded number of log lines.
func TestShortBackendRestartCostsSeconds(t *testing.T) {
	backend := startRestartable(t)
	h := startFacade(t, fmt.Sprintf(`
backends:
  monolith: { url: %s }
routes:
  - match: { path: / }
    to: monolith
`, backend.URL()))

	type outcome struct {
		at     time.Time
		status int
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
	)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				status := 0
				if resp, err := client.Get(h.proxy.URL + "/api/items"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				outcomes = append(outcomes, outcome{time.Now(), status})
				mu.Unlock()
				if status != 200 {
					time.Sleep(time.Millisecond) // a client retrying at once, a thousand times a second
				}
			}
		}()
	}
	t.Cleanup(func() { close(stop); wg.Wait() })
	okSince := func(since time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, o := range outcomes {
			if o.status == 200 && o.at.After(since) {
				n++
			}
		}
		return n
	}
	eventually(t, "the load is served", func() bool { return okSince(time.Time{}) > 50 })

	killed := time.Now()
	backend.kill()
	eventually(t, "the breaker opens", func() bool { return h.f.Backends()[0].Breaker == "open" })
	time.Sleep(time.Until(killed.Add(500 * time.Millisecond))) // the restart takes half a second
	backend.restart()
	ready := time.Now()

	deadline := ready.Add(10 * time.Second)
	for okSince(ready) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no 2xx 10s after the backend came back; breaker %s, health %s", h.f.Backends()[0].Breaker, h.f.Backends()[0].Health)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	var first time.Time
	failed := 0
	for _, o := range outcomes {
		if o.at.After(killed) && o.status != 200 {
			failed++
		}
		if o.status == 200 && o.at.After(ready) && first.IsZero() {
			first = o.at
		}
	}
	mu.Unlock()
	t.Logf("backend down for %s; 2xx again %s after it was ready; %d requests failed meanwhile",
		ready.Sub(killed).Round(time.Millisecond), first.Sub(ready).Round(time.Millisecond), failed)
	if d := first.Sub(ready); d > 3*time.Second {
		t.Fatalf("2xx resumed %s after the backend was ready, want within 3s", d)
	}
	if st := h.f.Backends()[0].Breaker; st != "closed" {
		t.Fatalf("breaker %s once traffic flows again", st)
	}
	if failed < 100 {
		t.Fatalf("only %d requests failed: the load was too light to test the log volume", failed)
	}
	// A line per state change and at most a line a second per kind of failure, not one
	// per failed request.
	warns := strings.Count(h.logs.String(), "level=WARN")
	t.Logf("%d WARN lines", warns)
	if warns > 20 {
		t.Fatalf("%d WARN lines for %d failed requests: the log is not bounded\n%s", warns, failed, h.logs.String())
	}
	if got := h.metric(`ficus_backend_health_checks_total{backend="monolith",result="failure"}`); got < 1 {
		t.Fatalf("no failed health check counted: %v", got)
	}
}

// TestHealthCheckRefusesDeadBackendAndFallsBack checks a backend the health check marks
// unhealthy gets no requests: safe ones go to the route's fallback, others are refused at
// once with 503 backend_unhealthy. When it passes a check again, it gets traffic again.
// Each change is logged once.
func TestHealthCheckRefusesDeadBackendAndFallsBack(t *testing.T) {
	inv, mono := startBackend(t, "inventory"), startBackend(t, "monolith")
	h := startFacade(t, fmt.Sprintf(`
backends:
  inventory:
    url: %s/base
    health: { path: '/ready?deep=1', interval: 20ms, unhealthy_threshold: 2 }
  monolith: { url: %s, health: { disabled: true } }
routes:
  - match: { path: /api/inventory }
    to: inventory
    fallback: monolith
  - match: { path: / }
    to: inventory
`, inv.URL(), mono.URL()))
	health := func(name string) string {
		for _, b := range h.f.Backends() {
			if b.Name == name {
				return b.Health
			}
		}
		return ""
	}
	if got, mh := health("inventory"), health("monolith"); got != "healthy" || mh != "disabled" {
		t.Fatalf("health at start: inventory %q, monolith %q; want healthy and disabled", got, mh)
	}
	eventually(t, "probes reach the backend", func() bool { return inv.probes.Load() >= 2 })
	if got := inv.seenProbe(); got != "/base/ready?deep=1" {
		t.Fatalf("probe went to %q, want the backend URL's path plus health.path", got)
	}
	if mono.probes.Load() != 0 {
		t.Fatal("a backend whose health check is disabled was probed")
	}

	inv.probeStatus.Store(http.StatusServiceUnavailable)
	eventually(t, "inventory is marked unhealthy", func() bool { return health("inventory") == "unhealthy" })
	hits := inv.hits.Load()
	if status, body, hdr := h.get("GET", "/api/inventory/items", nil); status != 200 || body != "monolith" || hdr.Get("Ficus-Backend") != "monolith" {
		t.Fatalf("safe request while unhealthy: %d %q from %q, want the fallback's 200", status, body, hdr.Get("Ficus-Backend"))
	}
	status, body, hdr := h.get("POST", "/api/orders", nil)
	if status != 503 || !strings.Contains(body, `"backend_unhealthy"`) || hdr.Get("Retry-After") != "1" {
		t.Fatalf("POST while unhealthy: %d %s (Retry-After %q), want 503 backend_unhealthy", status, body, hdr.Get("Retry-After"))
	}
	if inv.hits.Load() != hits {
		t.Fatal("an unhealthy backend was sent requests")
	}
	if got := h.metric(`ficus_backend_healthy{backend="inventory"}`); got != 0 {
		t.Fatalf("ficus_backend_healthy = %v while unhealthy", got)
	}
	if got := h.metric(`ficus_backend_healthy{backend="monolith"}`); got != -1 {
		t.Fatalf("ficus_backend_healthy exported for a backend without health check: %v", got)
	}

	inv.probeStatus.Store(0)
	eventually(t, "inventory is healthy again", func() bool { return health("inventory") == "healthy" })
	if status, body, _ := h.get("GET", "/api/inventory/items", nil); status != 200 || body != "inventory" {
		t.Fatalf("after recovery: %d %q", status, body)
	}
	logs := h.logs.String()
	if n := strings.Count(logs, "backend is unhealthy"); n != 1 {
		t.Fatalf("unhealthy logged %d times, want once:\n%s", n, logs)
	}
	if n := strings.Count(logs, "backend is healthy again"); n != 1 {
		t.Fatalf("recovery logged %d times, want once:\n%s", n, logs)
	}
}

// TestPassingHealthCheckClosesTheBreaker checks a breaker that opened because the backend was
// down is closed by the first passing health check after a failed one, long before open_for
// runs out; while a breaker that opened on failing requests of a backend that passes its
// health checks waits out open_for.
func TestPassingHealthCheckClosesTheBreaker(t *testing.T) {
	b := startBackend(t, "inventory")
	var failing atomic.Bool
	failing.Store(true)
	b.set(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	h := startFacade(t, fmt.Sprintf(`
backends:
  inventory:
    url: %s
    breaker: { consecutive_failures: 2, open_for: 1m }
    health: { interval: 20ms, unhealthy_threshold: 5 }
routes:
  - match: { path: / }
    to: inventory
`, b.URL()))
	breaker := func() string { return h.f.Backends()[0].Breaker }
	h.get("GET", "/", nil)
	h.get("GET", "/", nil)
	if breaker() != "open" {
		t.Fatalf("breaker %s after 2 failures", breaker())
	}
	// The health endpoint answers all along: the backend is up but failing, so the
	// breaker stays open.
	probes := b.probes.Load()
	eventually(t, "more probes pass", func() bool { return b.probes.Load() >= probes+3 })
	if breaker() != "open" {
		t.Fatalf("breaker %s: passing probes closed a breaker the backend's own failures opened", breaker())
	}
	// Now the backend goes down (probes fail, once is enough) and comes back.
	b.probeStatus.Store(http.StatusBadGateway)
	probes = b.probes.Load()
	eventually(t, "a probe fails", func() bool { return b.probes.Load() >= probes+1 })
	failing.Store(false)
	b.probeStatus.Store(0)
	eventually(t, "the breaker closes on the passing check", func() bool { return breaker() == "closed" })
	if status, _, _ := h.get("GET", "/", nil); status != 200 {
		t.Fatalf("status %d after the breaker closed", status)
	}
	if got := h.metric(`ficus_backend_breaker_transitions_total{backend="inventory",state="closed"}`); got != 1 {
		t.Fatalf("transitions to closed = %v, want 1", got)
	}
}
