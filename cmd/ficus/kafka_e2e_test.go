package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/event"
)

// TestUpWithKafka runs the shop on a Kafka bus through the real binary: a 3-broker kfake
// cluster listens on loopback in the test process, config.yaml says events.bus: kafka://…,
// and ficus up starts the monolith, both services and the facade, and no bus of its own. The
// seeded customers reach the payments service's copy through the monolith's outbox, the
// topic and the service's consumer group; an order placed through the facade lands in the
// topic; the payments service killed with SIGKILL comes back and its group goes on; ficus
// events dlq list|replay and ficus events tail work on the topics.
func TestUpWithKafka(t *testing.T) {
	kafka, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.Ports(0, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	brokers := "kafka://" + strings.Join(kafka.ListenAddrs(), ",")

	dir := t.TempDir()
	h := holdPorts(t, "facade", "admin", "monolith", "inventory", "payments")
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`facade:
  listen: %s
  admin: { listen: %s, token_env: E2E_TOKEN }
backends:
  monolith: { url: http://%s, timeout: 5s }
routes:
  - match: { path: / }
    to: monolith
monolith: { listen: %s, database: sqlite:data/monolith.db }
services:
  inventory: { listen: %s }
  payments: { listen: %s }
events: { bus: '%s' }
`, h.addr("facade"), h.addr("admin"), h.addr("monolith"), h.addr("monolith"), h.addr("inventory"), h.addr("payments"), brokers)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ficusBin, "check", "-c", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("ficus check: %v\n%s", err, out)
	}
	cmd := exec.Command(ficusBin, "up", "-c", cfgPath)
	cmd.Env = append(os.Environ(), "E2E_TOKEN=e2e-token-for-kafka")
	h.pass(cmd)
	up := startFicus(t, cmd)
	lines := up.out.waitFor(t, "Stop:   Ctrl-C", 90*time.Second)
	banner := strings.Join(lines, "\n")
	for _, want := range []string{"Started 4 components", "events      Kafka " + strings.TrimPrefix(brokers, "kafka://") + " (replicas 3, partitions 1) (external, not started here)"} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner lacks %q:\n%s", want, banner)
		}
	}

	payments := "http://" + h.addr("payments")
	pollUntil(t, "the payments service's customer copy has the seeded customers", 30*time.Second, func() (bool, string) {
		_, metrics := httpDo("GET", payments+"/metrics", "")
		copyLines := regexp.MustCompile(`(?m)^ficus_payments_customer_copy.*$`).FindAllString(metrics, -1)
		return strings.Contains(metrics, `ficus_payments_customer_copy_events_total{result="applied"} 4`+"\n"), strings.Join(copyLines, "; ")
	})

	var curl []string
	for _, l := range lines {
		if strings.Contains(l, "curl -s -X POST") || (curl != nil && !strings.HasSuffix(curl[len(curl)-1], "}'")) {
			curl = append(curl, strings.TrimSpace(l))
		}
	}
	if status, backend, body := placeOrder(t, strings.Join(curl, "\n")); status != 201 || backend != "monolith" {
		t.Fatalf("placing the banner's order: status %d via %q: %s", status, backend, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, config.Events{Bus: brokers}, bus.Options{Name: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pollUntil(t, "the order's event in the Kafka topic", 30*time.Second, func() (bool, string) {
		last, err := b.LastOf(ctx, []string{contract.TypeOrderPlaced})
		return err == nil && last > 0, fmt.Sprint(last, err)
	})

	pid := findProcess(t, "serve payments -c "+cfgPath)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "the payments service back, its consumer group caught up", 30*time.Second, func() (bool, string) {
		status, body := httpDo("GET", payments+"/readyz/customers", "")
		return status == 200 && strings.Contains(body, `"caught_up"`), fmt.Sprint(status, " ", body)
	})
	if n, err := b.Backlog(ctx, "payments-service-customers"); err != nil || n != 0 {
		t.Errorf("payments' consumer backlog = %d, %v; want 0", n, err)
	}

	// The operator's commands work on the topics as on the streams: a consumer's poison event
	// is listed by ficus events dlq list, replayed by ficus events dlq replay to the fixed
	// consumer, and ficus events tail shows the event and its replay.
	var fixed atomic.Bool
	handled := make(chan struct{}, 1)
	cctx, stopConsumer := context.WithCancel(ctx)
	defer stopConsumer()
	go b.Consume(cctx, "e2e-picky", func(_ context.Context, e event.Event) error {
		if !fixed.Load() {
			return errors.New("handler bug")
		}
		select {
		case handled <- struct{}{}:
		default:
		}
		return nil
	}, bus.ConsumerOptions{Types: []string{"e2e.poison.v1"}, MaxAttempts: 2, Backoff: func(int) time.Duration { return 50 * time.Millisecond }})
	poison, err := event.New("/e2e", "e2e.poison.v1", "P-1", map[string]int{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, poison); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "the poison event in ficus events dlq list", 30*time.Second, func() (bool, string) {
		o, err := exec.Command(ficusBin, "events", "dlq", "list", "-c", cfgPath).CombinedOutput()
		return err == nil && strings.Contains(string(o), poison.ID) && strings.Contains(string(o), "handler bug") &&
			strings.Contains(string(o), "1 dead letter(s)"), string(o)
	})
	fixed.Store(true)
	if o, err := exec.Command(ficusBin, "events", "dlq", "replay", poison.ID, "-c", cfgPath).CombinedOutput(); err != nil || !strings.Contains(string(o), "replayed dead letter") {
		t.Fatalf("ficus events dlq replay: %v\n%s", err, o)
	}
	select {
	case <-handled:
	case <-time.After(30 * time.Second):
		t.Fatal("the replayed event never reached the fixed consumer")
	}
	if o, err := exec.Command(ficusBin, "events", "dlq", "list", "-c", cfgPath).CombinedOutput(); err != nil || !strings.Contains(string(o), "no dead letters") {
		t.Errorf("ficus events dlq list after the replay: %v\n%s", err, o)
	}
	tctx, stopTail := context.WithTimeout(ctx, 20*time.Second)
	defer stopTail()
	tail := exec.CommandContext(tctx, ficusBin, "events", "tail", "-all", "-c", cfgPath)
	tailed := startFicus(t, tail)
	tailed.out.waitFor(t, contract.TypeOrderPlaced, 15*time.Second)
	tailed.out.waitFor(t, poison.ID+"  (replay)", 15*time.Second)
	stopTail()

	if err := up.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := up.wait(t, 30*time.Second); code != 0 {
		t.Errorf("ficus up exited with %d:\n%s", code, up.out)
	}
}
