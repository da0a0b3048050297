package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/extracted/payments"
	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/bus/kafkatest"
	"github.com/ficus-project/ficus/platform/bus/natstest"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

// The chaos suite: the whole shop in remote mode (the order saga across the inventory and
// payments services), each component its own `ficus serve` process on a socket the test
// holds, under a steady load of orders through the facade. Phase by phase it kills one
// component with SIGKILL and starts it again — facade, monolith, inventory, payments, the
// bus (each NATS node in turn when the bus is a cluster) — and then corrupts config.yaml
// under the running facade. Afterwards it proves that nothing was lost: every accepted order
// is terminal, stock and money reconcile, every event recorded in an outbox is in the stream
// exactly once and reached its consumers, and `ficus migrate verify -reverse` finds the
// monolith's copy of the services' data (kept by `ficus migrate sync -reverse`) equal to it.
//
// On Kafka (FICUS_CHAOS_BUS=kafka) the bus is a 3-broker kfake cluster in the test's own
// process, so no broker can be killed on its own: the bus phases move the events topic's
// leadership to each broker in turn and stop the whole cluster and start it again from its
// data. And Kafka's idempotent producer does not make a publish abandoned at its timeout and
// sent again by the relay one record (NATS's duplicate window does): the topic may hold a
// copy of an event. So on Kafka every outbox event must be in the topic at least once, the
// copies are counted in the report, and each consumer must have applied each event once.
//
// `make test` runs one short round on SQLite, and on PostgreSQL when FICUS_TEST_POSTGRES is
// set; `make chaos` runs longer phases and more rounds (FICUS_CHAOS_ROUNDS,
// FICUS_CHAOS_PHASE) on both engines, on the NATS cluster and on Kafka, and prints the
// report with -v.

// chaosSettings are the knobs of one chaos run.
type chaosSettings struct {
	// rounds is how many times the faults go round (each component killed once a round).
	rounds int
	// phase is how long each phase's load runs.
	phase time.Duration
	// clients is how many clients place orders at once.
	clients int
	// buses are the event buses the suite runs on, one run each: chaosEmbedded (`ficus serve
	// bus`), chaosNATSCluster (a 3-node NATS JetStream cluster of nats-server processes) or
	// chaosKafka (a 3-broker kfake cluster in the test process).
	buses []string
	// bus is the bus of the run at hand, one of buses.
	bus string
}

// The buses the chaos suite runs on (FICUS_CHAOS_BUS).
const (
	chaosEmbedded    = "embedded"
	chaosNATSCluster = "nats-cluster"
	chaosKafka       = "kafka"
)

// chaosFromEnv reads FICUS_CHAOS_ROUNDS (1), FICUS_CHAOS_PHASE (2s) and FICUS_CHAOS_BUS (a
// comma-separated list of embedded, nats-cluster and kafka; embedded,kafka when unset;
// FICUS_CHAOS_CLUSTER=1, its older form, means nats-cluster): make test's bounded run by
// default, make chaos's long one when set.
func chaosFromEnv(t *testing.T) chaosSettings {
	t.Helper()
	s := chaosSettings{rounds: 1, phase: 2 * time.Second, clients: 8}
	if v := os.Getenv("FICUS_CHAOS_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			t.Fatalf("FICUS_CHAOS_ROUNDS=%q: want 1 to 100", v)
		}
		s.rounds = n
	}
	if v := os.Getenv("FICUS_CHAOS_PHASE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 10*time.Minute {
			t.Fatalf("FICUS_CHAOS_PHASE=%q: want a duration from 1s to 10m", v)
		}
		s.phase = d
	}
	s.buses = []string{chaosEmbedded, chaosKafka}
	switch v := os.Getenv("FICUS_CHAOS_CLUSTER"); v {
	case "", "0":
	case "1":
		s.buses = []string{chaosNATSCluster}
	default:
		t.Fatalf("FICUS_CHAOS_CLUSTER=%q: want 1 or nothing (or FICUS_CHAOS_BUS=nats-cluster)", v)
	}
	if v := os.Getenv("FICUS_CHAOS_BUS"); v != "" {
		if os.Getenv("FICUS_CHAOS_CLUSTER") == "1" {
			t.Fatalf("FICUS_CHAOS_CLUSTER=1 and FICUS_CHAOS_BUS=%s: set one", v)
		}
		s.buses = nil
		for b := range strings.SplitSeq(v, ",") {
			if !slices.Contains([]string{chaosEmbedded, chaosNATSCluster, chaosKafka}, b) || slices.Contains(s.buses, b) {
				t.Fatalf("FICUS_CHAOS_BUS=%q: want a list of embedded, nats-cluster and kafka, each once", v)
			}
			s.buses = append(s.buses, b)
		}
	}
	return s
}

// TestChaos runs the chaos suite on SQLite, and on PostgreSQL when a server is configured
// (FICUS_TEST_POSTGRES; make test-postgres and CI set it).
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts real processes under load for a while; run without -short")
	}
	t.Run("sqlite", runChaosOnEachBus)
	storetest.Postgres(t, testChaosPostgres)
}

func testChaosPostgres(t *testing.T) { runChaosOnEachBus(t) }

// runChaosOnEachBus runs the suite once on each bus of the settings, a subtest each.
func runChaosOnEachBus(t *testing.T) {
	set := chaosFromEnv(t)
	for _, b := range set.buses {
		t.Run(b, func(t *testing.T) {
			set.bus = b
			runChaos(t, set)
		})
	}
}

// natsServerBin builds nats-server once per test run, for the tests that run a NATS cluster.
var natsServerBin = sync.OnceValues(func() (string, error) { return natstest.Build(filepath.Dir(ficusBin)) })

// chaosRig is the shop as real processes, as ficus up would run it, with the test as the
// supervisor: it holds every listening socket, so a component killed and started again
// keeps its address, and clients wait in the socket's queue meanwhile.
type chaosRig struct {
	t       *testing.T
	set     chaosSettings
	engine  string
	dir     string
	cfgText []byte
	*servedSet
	dsn     map[string]string // monolith, inventory, payments
	token   string
	cluster *natstest.Cluster  // the NATS cluster, when the bus is one
	kafka   *kafkatest.Cluster // the kfake cluster, when the bus is Kafka
	// Neither: the embedded bus, `ficus serve bus`.

	mu    sync.Mutex // guards phase
	phase *chaosPhase
}

// chaosComponents are the ficus processes, in the order they start.
var chaosComponents = []string{"bus", "inventory", "payments", "monolith", "facade"}

func newChaosRig(t *testing.T, set chaosSettings) *chaosRig {
	t.Helper()
	engine := os.Getenv(storetest.EnvEngine)
	if engine == "" {
		engine = "sqlite"
	}
	r := &chaosRig{t: t, set: set, engine: engine, dir: t.TempDir(),
		token: fmt.Sprintf("chaos-%d", rand.Int64()), dsn: map[string]string{}}
	names := []string{"facade", "admin", "monolith", "inventory", "payments"}
	busURL := ""
	switch set.bus {
	case chaosNATSCluster:
		bin, err := natsServerBin()
		if err != nil {
			t.Fatal(err)
		}
		r.cluster = natstest.StartCluster(t, bin, 3)
		busURL = r.cluster.URL()
	case chaosKafka:
		r.kafka = kafkatest.StartCluster(t, 3)
		busURL = r.kafka.URL()
	default:
		names = append(names, "bus")
	}
	r.servedSet = newServedSet(t, holdPorts(t, names...))
	r.env = []string{"CHAOS_ADMIN_TOKEN=" + r.token}
	for _, db := range []string{"monolith", "inventory", "payments"} {
		if engine == "sqlite" {
			r.dsn[db] = "sqlite:" + filepath.Join(r.dir, "data", db+".db")
		} else {
			r.dsn[db] = storetest.DSN(t)
		}
	}
	events := fmt.Sprintf("{ bus: embedded, embedded: { listen: %s, store: data/nats } }", r.h.addr("bus"))
	if busURL != "" {
		events = fmt.Sprintf("{ bus: '%s' }", busURL)
	}
	// Short timeouts and breakers so that a killed component costs the load seconds, not
	// minutes; the saga's timeout is long enough that a restart does not compensate orders.
	backend := "timeout: 1s, retry: { attempts: 2, backoff: 20ms, max_backoff: 100ms }, breaker: { consecutive_failures: 5, open_for: 300ms }"
	r.cfgText = fmt.Appendf(nil, `# The chaos suite's shop: remote mode, every component its own process.
facade:
  listen: %s
  admin: { listen: %s, token_env: CHAOS_ADMIN_TOKEN }
backends:
  monolith: { url: http://%s, timeout: 5s, breaker: { consecutive_failures: 5, open_for: 300ms } }
  inventory: { url: http://%s, %s }
  payments: { url: http://%s, %s }
routes:
  - match: { path: /api/inventory }
    to: inventory
  - match: { path: /api/payments }
    to: payments
  - match: { path: / }
    to: monolith
monolith:
  listen: %s
  database: '%s'
  modules: { inventory: remote, payments: remote }
  saga: { reply_within: 500ms, timeout: 60s, lease: 1s, max_backoff: 300ms, compensation_attempts: 1000 }
services:
  inventory: { listen: %s, database: '%s' }
  payments: { listen: %s, database: '%s' }
events: %s
`, r.h.addr("facade"), r.h.addr("admin"), r.h.addr("monolith"), r.h.addr("inventory"), backend, r.h.addr("payments"), backend,
		r.h.addr("monolith"), r.dsn["monolith"], r.h.addr("inventory"), r.dsn["inventory"], r.h.addr("payments"), r.dsn["payments"], events)
	r.cfgPath = filepath.Join(r.dir, "config.yaml")
	if err := os.WriteFile(r.cfgPath, r.cfgText, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ficusBin, "check", "-c", r.cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("ficus check refuses the chaos config: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, name := range chaosComponents {
			if p := r.process(name); p != nil {
				t.Logf("--- last output of %s:\n%s", name, tail(p.out.String(), 40))
			}
		}
	})
	return r
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (r *chaosRig) url(name string) string { return "http://" + r.h.addr(name) }

// migrate runs ficus migrate with args and fails the test unless it exits 0.
func (r *chaosRig) migrate(args ...string) string {
	r.t.Helper()
	out, err := exec.Command(ficusBin, append(append([]string{"migrate"}, args...), "-c", r.cfgPath)...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("ficus migrate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// chaosPhase counts the requests the clients sent during one phase.
type chaosPhase struct {
	name  string
	fault string // what was done, as the report says it

	mu     sync.Mutex
	sent   int
	ok     int
	failed map[string]int // by status: "402", "503", "409-in-flight", "conn" (no HTTP answer)
	notes  []string
}

func (p *chaosPhase) count(status int, inFlight bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent++
	switch {
	case status >= 200 && status < 300:
		p.ok++
	case status == 0:
		p.failed["conn"]++
	case inFlight:
		// The key's first request is still running, or died with the process that ran it
		// and the key's lease has not run out: the client tries again later.
		p.failed["409-in-flight"]++
	default:
		p.failed[strconv.Itoa(status)]++
	}
}

func (p *chaosPhase) note(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
}

// begin makes a new phase the one requests are counted in, and returns it.
func (r *chaosRig) begin(name, fault string) *chaosPhase {
	p := &chaosPhase{name: name, fault: fault, failed: map[string]int{}}
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
	return p
}

func (r *chaosRig) current() *chaosPhase {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase
}

// report formats the phases as a table.
func chaosReport(title string, phases []*chaosPhase) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", title)
	fmt.Fprintf(&b, "  %-18s %-44s %6s %6s  %s\n", "PHASE", "FAULT", "SENT", "OK", "FAILED BY STATUS")
	var sent, ok int
	for _, p := range phases {
		p.mu.Lock()
		var failed []string
		for _, k := range slices.Sorted(mapKeys(p.failed)) {
			failed = append(failed, fmt.Sprintf("%s×%d", k, p.failed[k]))
		}
		f := strings.Join(failed, " ")
		if f == "" {
			f = "-"
		}
		fmt.Fprintf(&b, "  %-18s %-44s %6d %6d  %s\n", p.name, p.fault, p.sent, p.ok, f)
		for _, n := range p.notes {
			fmt.Fprintf(&b, "  %-18s   %s\n", "", n)
		}
		sent, ok = sent+p.sent, ok+p.ok
		p.mu.Unlock()
	}
	fmt.Fprintf(&b, "  %-18s %-44s %6d %6d\n", "total", "", sent, ok)
	return b.String()
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// chaosOrder is one order a client placed: its key and the final answer it got.
type chaosOrder struct {
	key    string
	status int
	id     string
}

// load places orders through the facade from r.set.clients clients until stop is closed,
// each order with its own Idempotency-Key and retried with that key — as a client should —
// until it is answered for good (2xx or 4xx other than 409 idempotency_in_flight). An order
// not answered at once is retried in the background (up to maxPending orders at a time, then
// by the client itself) while the client places new ones, so that orders stuck behind a
// killed process do not stop the load. Every attempt is counted in the phase current when
// it was sent. load returns once every order begun is answered, or ctx ends.
func (r *chaosRig) load(ctx context.Context, stop <-chan struct{}, customers []string) []chaosOrder {
	const maxPending = 64
	var next atomic.Int64
	var mu sync.Mutex
	var out []chaosOrder
	var clients, retries sync.WaitGroup
	pending := make(chan struct{}, maxPending)
	client := &http.Client{Timeout: 10 * time.Second}
	// try sends the order once and reports whether it is answered for good.
	try := func(o *chaosOrder, body string) bool {
		status, text := postOrder(ctx, client, r.url("facade"), o.key, body)
		inFlight := status == http.StatusConflict && strings.Contains(text, "idempotency_in_flight")
		r.current().count(status, inFlight)
		if status == 0 || status >= 500 || inFlight {
			return false
		}
		o.status = status
		var v struct{ ID string }
		_ = json.Unmarshal([]byte(text), &v)
		o.id = v.ID
		return true
	}
	// retry tries the order again until it is answered, then records it.
	retry := func(o chaosOrder, body string) {
		for ctx.Err() == nil {
			// A client's backoff before its retry.
			time.Sleep(time.Duration(20+rand.IntN(80)) * time.Millisecond)
			if try(&o, body) {
				break
			}
		}
		mu.Lock()
		out = append(out, o)
		mu.Unlock()
	}
	for range r.set.clients {
		clients.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				k := next.Add(1)
				o := chaosOrder{key: fmt.Sprintf("chaos-%d", k)}
				sku := []string{"CHAOS-A", "CHAOS-B"}[k%2]
				body := fmt.Sprintf(`{"customer_id":%q,"lines":[{"sku":%q,"quantity":%d}]}`, customers[int(k)%len(customers)], sku, 1+k%2)
				if try(&o, body) {
					mu.Lock()
					out = append(out, o)
					mu.Unlock()
					continue
				}
				select {
				case pending <- struct{}{}:
					retries.Go(func() {
						defer func() { <-pending }()
						retry(o, body)
					})
				default:
					retry(o, body) // enough orders wait already: this client waits with its own
				}
			}
		})
	}
	clients.Wait()
	retries.Wait()
	return out
}

// postOrder sends one POST /api/orders and returns its status (0 when no HTTP answer came)
// and body.
func postOrder(ctx context.Context, client *http.Client, base, key, body string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/orders", strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b)
}

// chaosFault is what a phase does to the running shop.
type chaosFault struct {
	name  string
	fault string
	do    func(p *chaosPhase)
}

// killFault kills the named component with SIGKILL and starts it again after down.
func (r *chaosRig) killFault(name string, down time.Duration) chaosFault {
	return chaosFault{name: name, fault: fmt.Sprintf("SIGKILL %s, restart after %s", name, down), do: func(p *chaosPhase) {
		start := time.Now()
		r.kill(name)
		time.Sleep(down) // the component stays down this long: the fault itself
		r.start(name)
		p.note("%s serving again %s after the kill", name, time.Since(start).Round(time.Millisecond))
	}}
}

// natsNodeFault kills NATS node i of the cluster with SIGKILL and starts it again after down.
func (r *chaosRig) natsNodeFault(i int, down time.Duration) chaosFault {
	return chaosFault{name: fmt.Sprintf("nats-%d", i), fault: fmt.Sprintf("SIGKILL NATS node %d, restart after %s", i, down), do: func(p *chaosPhase) {
		start := time.Now()
		leader := r.cluster.StreamLeader(r.t, bus.EventsStream)
		r.cluster.Kill(r.t, i)
		time.Sleep(down) // the node stays down this long: the fault itself
		r.cluster.Start(r.t, i)
		role := "a follower"
		if leader == i {
			role = "the events stream's leader"
		}
		p.note("node %d (%s) back %s after the kill", i, role, time.Since(start).Round(time.Millisecond))
	}}
}

// kafkaLeaderFault moves the events topic's leadership from the broker that has it to the
// next one: what a Kafka broker's death does to its partitions, short of the death, which
// kfake cannot do (every broker is the test process). Producers and consumers of the old
// leader are told it no longer leads and must find the new one.
func (r *chaosRig) kafkaLeaderFault() chaosFault {
	return chaosFault{name: "kafka-leader", fault: "move events topic leader to the next broker", do: func(p *chaosPhase) {
		from := r.kafka.LeaderFor(bus.EventsStream, 0)
		if from < 0 {
			r.t.Fatalf("the events topic has no leader")
		}
		to := (from + 1) % int32(r.kafka.Size())
		if err := r.kafka.MoveLeader(bus.EventsStream, 0, to); err != nil {
			r.t.Fatal(err)
		}
		p.note("leader moved from broker %d to broker %d", from, to)
	}}
}

// kafkaStopFault stops the whole kfake cluster — its listeners and every connection closed —
// and starts it again after down on the same ports with the data it held: the Kafka bus down
// and back, as the embedded bus's kill is. It is a stop, not a SIGKILL: kfake runs in the
// test's process, and flushes its data when it closes.
func (r *chaosRig) kafkaStopFault(down time.Duration) chaosFault {
	return chaosFault{name: "kafka", fault: fmt.Sprintf("stop the 3 Kafka brokers, restart after %s", down), do: func(p *chaosPhase) {
		start := time.Now()
		r.kafka.Stop(r.t)
		time.Sleep(down) // the cluster stays down this long: the fault itself
		r.kafka.Start(r.t)
		p.note("brokers back %s after the stop", time.Since(start).Round(time.Millisecond))
	}}
}

// corruptConfigFault writes a broken config.yaml under the running facade, checks that it
// refuses it and keeps serving the last good config, then puts the good one back.
func (r *chaosRig) corruptConfigFault(hold time.Duration) chaosFault {
	return chaosFault{name: "config", fault: "corrupt config.yaml, restore it after " + hold.String(), do: func(p *chaosPhase) {
		t := r.t
		before := r.lastReload()
		// Cut in the middle of a line, as an editor or a half-finished copy would leave it.
		bad := append(append([]byte(nil), r.cfgText[:len(r.cfgText)*2/3]...), []byte("\n  - match: { path: [\n")...)
		if err := os.WriteFile(r.cfgPath, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		var refused reloadStatus
		pollUntil(t, "the facade to refuse the corrupt config", 10*time.Second, func() (bool, string) {
			refused = r.lastReload()
			return !refused.OK && refused.Time.After(before.Time), fmt.Sprintf("%+v", refused)
		})
		if refused.Generation != before.Generation {
			t.Errorf("the corrupt config changed the facade's generation from %d to %d", before.Generation, refused.Generation)
		}
		p.note("refused: %s", firstOr(refused.Errors, "(no reason)"))
		time.Sleep(hold) // the load runs against the facade while the file stays corrupt
		if err := os.WriteFile(r.cfgPath, r.cfgText, 0o644); err != nil {
			t.Fatal(err)
		}
		pollUntil(t, "the facade to accept the restored config", 10*time.Second, func() (bool, string) {
			now := r.lastReload()
			return now.OK && now.Time.After(refused.Time), fmt.Sprintf("%+v", now)
		})
	}}
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}

// reloadStatus is the admin API's GET /api/reload.
type reloadStatus struct {
	Time       time.Time `json:"time"`
	OK         bool      `json:"ok"`
	Errors     []string  `json:"errors"`
	Generation uint64    `json:"generation"`
}

func (r *chaosRig) lastReload() reloadStatus {
	r.t.Helper()
	req, _ := http.NewRequest("GET", r.url("admin")+"/api/reload", nil)
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		r.t.Fatalf("reading the facade's last reload: %v", err)
	}
	defer resp.Body.Close()
	var s reloadStatus
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != 200 {
		r.t.Fatalf("reading the facade's last reload: %d %v", resp.StatusCode, err)
	}
	return s
}

// runChaos runs the suite once with set.
func runChaos(t *testing.T, set chaosSettings) {
	r := newChaosRig(t, set)
	for _, name := range chaosComponents {
		if name == "bus" && set.bus != chaosEmbedded {
			continue
		}
		r.start(name)
	}
	// The shop's data: customers in the monolith (the payments service copies them from
	// their events), items in the inventory service, which owns stock in remote mode.
	initial := map[string]int{"CHAOS-A": 1_000_000, "CHAOS-B": 1_000_000}
	ids := map[string]string{}
	for email, credit := range map[string]int64{"rich@chaos.test": 1 << 40, "declined@decline.test": 1 << 40, "modest@chaos.test": 50_000} {
		status, body := httpDo("POST", r.url("facade")+"/api/customers",
			fmt.Sprintf(`{"name":"Chaos","email":%q,"credit_limit_cents":%d}`, email, credit))
		if status != 201 {
			t.Fatalf("registering %s: %d %s", email, status, body)
		}
		var c struct{ ID string }
		_ = json.Unmarshal([]byte(body), &c)
		ids[email] = c.ID
	}
	for sku, onHand := range initial {
		if status, body := httpDo("POST", r.url("facade")+"/api/inventory/items",
			fmt.Sprintf(`{"sku":%q,"name":"Chaos","price_cents":100,"on_hand":%d}`, sku, onHand)); status != 201 {
			t.Fatalf("adding %s: %d %s", sku, status, body)
		}
	}
	pollUntil(t, "the payments service's customer copy caught up", 30*time.Second, func() (bool, string) {
		status, body := httpDo("GET", r.url("payments")+"/readyz/customers", "")
		return status == 200, body
	})
	// The monolith keeps a copy of the services' data, as it must to take a capability back:
	// backfilled now, kept in step from the services' events afterwards (ficus migrate sync
	// -reverse), and verified at the end.
	for _, capability := range []string{"inventory", "payments"} {
		r.migrate(capability, "backfill", "-reverse")
	}
	// Most orders go through; some are declined by the card, some by the credit limit once
	// the modest customer has spent it: refusals whose compensations release stock.
	rich := ids["rich@chaos.test"]
	customers := []string{rich, rich, rich, rich, rich, ids["declined@decline.test"], ids["modest@chaos.test"]}

	var faults []chaosFault
	for range set.rounds {
		faults = append(faults, chaosFault{name: "steady", fault: "none"})
		faults = append(faults, r.killFault("facade", 300*time.Millisecond), r.killFault("monolith", 500*time.Millisecond),
			r.killFault("inventory", 500*time.Millisecond), r.killFault("payments", 500*time.Millisecond))
		switch set.bus {
		case chaosNATSCluster:
			for i := range r.cluster.Size() {
				faults = append(faults, r.natsNodeFault(i, time.Second))
			}
		case chaosKafka:
			for range r.kafka.Size() {
				faults = append(faults, r.kafkaLeaderFault())
			}
			faults = append(faults, r.kafkaStopFault(500*time.Millisecond))
		default:
			faults = append(faults, r.killFault("bus", 500*time.Millisecond))
		}
		faults = append(faults, r.corruptConfigFault(set.phase/2))
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(faults))*set.phase+5*time.Minute)
	defer cancel()
	var phases []*chaosPhase
	stop := make(chan struct{})
	placed := make(chan []chaosOrder, 1)
	go func() { placed <- r.load(ctx, stop, customers) }()
	for _, f := range faults {
		p := r.begin(f.name, f.fault)
		phases = append(phases, p)
		start := time.Now()
		time.Sleep(set.phase / 4) // load before the fault
		if f.do != nil {
			f.do(p)
		}
		time.Sleep(time.Until(start.Add(set.phase))) // load after it, to the phase's end
	}
	phases = append(phases, r.begin("drain", "no new orders; retries answered"))
	close(stop)
	var all []chaosOrder
	select {
	case all = <-placed:
	case <-ctx.Done():
		t.Fatal("the clients' orders were not all answered in time")
	}
	title := fmt.Sprintf("chaos on %s, %s bus: %d round(s) of %s phases, %d clients", r.engine, map[string]string{chaosEmbedded: "embedded", chaosNATSCluster: "3-node NATS", chaosKafka: "3-broker Kafka (kfake)"}[set.bus], set.rounds, set.phase, set.clients)
	t.Log("\n" + chaosReport(title, phases))

	r.checkAfterChaos(ctx, all, initial)
}

// checkAfterChaos proves that the run lost nothing.
func (r *chaosRig) checkAfterChaos(ctx context.Context, all []chaosOrder, initial map[string]int) {
	t := r.t
	accepted := map[string]chaosOrder{}
	answers := map[int]int{}
	for _, o := range all {
		answers[o.status]++
		switch o.status {
		case http.StatusCreated, http.StatusAccepted:
			if o.id == "" {
				t.Errorf("order %s answered %d without an id", o.key, o.status)
			}
			accepted[o.id] = o
		case 0:
			t.Errorf("order %s was never answered", o.key)
		}
	}
	if answers[http.StatusCreated] == 0 || answers[http.StatusPaymentRequired] == 0 {
		t.Errorf("final answers %v: want orders placed (201) and declined (402), or the run proved little", answers)
	}

	// Every accepted order is terminal; stock is conserved; every captured payment belongs
	// to one placed order of its amount, no order was charged twice, no key made two orders.
	placed, cancelled := checkShop(t, r.dsn["monolith"], r.dsn["payments"], r.url("inventory"), initial, len(all), accepted)
	r.checkMoney()
	r.checkEvents(ctx)

	// The monolith's copy of the services' data, kept in step from their events, equals
	// them: no event the services recorded was lost on the way.
	for _, capability := range []string{"inventory", "payments"} {
		r.migrate(capability, "sync", "-reverse", "-until-caught-up", "-deadline", "60s")
		if out := r.migrate(capability, "verify", "-reverse"); !strings.Contains(out, "clean") {
			t.Errorf("ficus migrate %s verify -reverse:\n%s", capability, out)
		}
	}
	t.Logf("%d orders: final answers %v; %d accepted, all terminal: %d placed, %d cancelled; stock, money and events reconcile; ficus migrate verify -reverse clean",
		len(all), answers, len(accepted), placed, cancelled)
}

// checkMoney checks on the payments service's database that each customer's outstanding
// balance is the sum of the payments captured for them.
func (r *chaosRig) checkMoney() {
	t := r.t
	db := openStore(t, r.dsn["payments"])
	var rows []struct {
		CustomerID string
		Captured   int64
		Balance    int64
	}
	err := db.Raw(`SELECT c.customer_id AS customer_id,
			COALESCE((SELECT SUM(amount_cents) FROM payments_payments p WHERE p.customer_id = c.customer_id AND p.status = 'captured'), 0) AS captured,
			COALESCE((SELECT outstanding_cents FROM payments_balances b WHERE b.customer_id = c.customer_id), 0) AS balance
		FROM payments_customers c`).Scan(&rows).Error
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if row.Captured != row.Balance {
			t.Errorf("customer %s: balance %d, captured payments %d", row.CustomerID, row.Balance, row.Captured)
		}
	}
}

// openStore opens dsn for the test's checks, closed when the test ends.
func openStore(t *testing.T, dsn string) *gorm.DB {
	t.Helper()
	db, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(db) })
	return db
}

// checkEvents checks that every event the three databases recorded in their outboxes was
// published, is in the events stream exactly once — at least once on Kafka, where a publish
// abandoned at its timeout may be stored and sent again by the relay (the copies are
// counted) — and that the durable consumers applied every event of their types once: the
// monolith the payments service's captures, the payments service the monolith's customer
// events.
func (r *chaosRig) checkEvents(ctx context.Context) {
	t := r.t
	dbs := map[string]*gorm.DB{}
	for name, dsn := range r.dsn {
		dbs[name] = openStore(t, dsn)
	}
	recorded := map[string]string{} // event id → database
	for name, db := range dbs {
		pollUntil(t, name+"'s outbox published", 60*time.Second, func() (bool, string) {
			var unsent int64
			if err := db.Raw(`SELECT COUNT(*) FROM ficus_outbox WHERE sent_at IS NULL`).Scan(&unsent).Error; err != nil {
				return false, err.Error()
			}
			return unsent == 0, fmt.Sprintf("%d events unsent", unsent)
		})
		var ids []string
		if err := db.Raw(`SELECT event_id FROM ficus_outbox`).Scan(&ids).Error; err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if other, dup := recorded[id]; dup {
				t.Errorf("event %s recorded by %s and %s", id, other, name)
			}
			recorded[id] = name
		}
	}

	b, err := bus.Connect(ctx, r.events(), bus.Options{Name: "chaos-check"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	inStream, byType := readStream(t, ctx, b)
	var missing, twice []string
	copies := 0 // records beyond an event's first
	for id := range recorded {
		switch n := inStream[id]; n {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			twice = append(twice, id)
			copies += n - 1
		}
	}
	var foreign int
	for id := range inStream {
		if _, ok := recorded[id]; !ok {
			foreign++
		}
	}
	// Kafka may hold copies of an event; NATS drops them by the event id in its window.
	copiesAllowed := r.kafka != nil
	if len(missing) > 0 || (len(twice) > 0 && !copiesAllowed) || foreign > 0 {
		t.Errorf("events: %d recorded, %d in the stream; %d missing from it (%v), %d in it more than once (%v), %d in it that no outbox recorded",
			len(recorded), len(inStream), len(missing), first(missing, 5), len(twice), first(twice, 5), foreign)
	}

	for _, c := range []struct {
		db, consumer string
		types        []string
	}{
		{"monolith", orders.PaymentsConsumer, []string{contract.TypePaymentCaptured}},
		{"payments", payments.CustomersConsumer, []string{contract.TypeCustomerRegistered, contract.TypeCustomerCreditLimitChange}},
	} {
		pollUntil(t, c.consumer+" caught up", 60*time.Second, func() (bool, string) {
			n, err := b.Backlog(ctx, c.consumer)
			if err != nil {
				return false, err.Error()
			}
			return n == 0, fmt.Sprintf("%d events to handle", n)
		})
		var seen []string
		if err := dbs[c.db].Raw(`SELECT event_id FROM ficus_inbox WHERE consumer = ?`, c.consumer).Scan(&seen).Error; err != nil {
			t.Fatal(err)
		}
		applied := map[string]bool{}
		for _, id := range seen {
			if applied[id] {
				t.Errorf("consumer %s applied event %s more than once", c.consumer, id)
			}
			applied[id] = true
		}
		var want, lost int
		for _, typ := range c.types {
			for _, id := range slices.Compact(slices.Sorted(slices.Values(byType[typ]))) {
				want++
				if !applied[id] {
					lost++
				}
			}
		}
		if lost > 0 || want == 0 {
			t.Errorf("consumer %s: %d of the stream's %d events of %v not in its inbox", c.consumer, lost, want, c.types)
		}
	}
	if copiesAllowed {
		t.Logf("events: %d recorded in the outboxes, each in the topic at least once; %d duplicate record(s) of %d event(s) in it (%d records in all); consumers applied every event of their types once",
			len(recorded), copies, len(twice), len(recorded)+copies)
		return
	}
	t.Logf("events: %d recorded in the outboxes, each in the stream once; consumers applied every event of their types", len(recorded))
}

// events is the bus config the test's own clients connect with.
func (r *chaosRig) events() config.Events {
	if r.cluster != nil {
		return config.Events{Bus: r.cluster.URL()}
	}
	if r.kafka != nil {
		return config.Events{Bus: r.kafka.URL()}
	}
	return config.Events{Bus: "embedded", Embedded: config.Embedded{Listen: r.h.addr("bus")}}
}

// errStreamRead ends readStream's Read once it reached the end of the stream.
var errStreamRead = errors.New("read to the end of the stream")

// readStream reads the whole events stream and returns how many times it holds each event
// id, and the ids of each type.
func readStream(t *testing.T, ctx context.Context, b *bus.Bus) (map[string]int, map[string][]string) {
	t.Helper()
	pos, err := b.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	byType := map[string][]string{}
	if pos.Last == 0 {
		return count, byType
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last uint64
	err = b.Read(rctx, 0, bus.ReadOptions{}, func(_ context.Context, batch []bus.Stored) error {
		for _, s := range batch {
			if s.Err != nil {
				t.Errorf("stream message %d is not an event: %v", s.Seq, s.Err)
				continue
			}
			count[s.Event.ID]++
			byType[s.Event.Type] = append(byType[s.Event.Type], s.Event.ID)
			last = s.Seq
		}
		if last >= pos.Last {
			return errStreamRead
		}
		return nil
	})
	if !errors.Is(err, errStreamRead) {
		t.Fatalf("reading the events stream to %d: got to %d: %v", pos.Last, last, err)
	}
	return count, byType
}

func first(s []string, n int) []string {
	sort.Strings(s)
	return s[:min(n, len(s))]
}
