package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/contract"
)

// TestUpWithKafka runs the shop on a Kafka bus through the real binary: a 3-broker kfake
// cluster listens on loopback in the test process, config.yaml says events.bus: kafka://…,
// and ficus up starts the monolith, both services and the facade, and no bus of its own. The
// seeded customers reach the payments service's copy through the monolith's outbox, the
// topic and the service's consumer group; an order placed through the facade lands in the
// topic; the payments service killed with SIGKILL comes back and its group goes on.
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

	if err := up.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := up.wait(t, 30*time.Second); code != 0 {
		t.Errorf("ficus up exited with %d:\n%s", code, up.out)
	}
}
