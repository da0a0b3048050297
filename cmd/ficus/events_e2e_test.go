package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/bus"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/event"
)

// TestDeadLetterCommands parks a poison event with a real consumer against a real ficus
// serve bus process, then lists and replays it with the CLI as an operator would. The bus
// serves on a port the test holds and hands it (an inherited listener).
func TestDeadLetterCommands(t *testing.T) {
	dir := t.TempDir()
	h := holdPorts(t, "bus")
	addr := h.addr("bus")
	cfgPath := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`backends: { monolith: { url: http://127.0.0.1:1 } }
routes: [{ match: { path: / }, to: monolith }]
events: { bus: embedded, embedded: { listen: %s, store: data/nats } }
`, addr)), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	srv := exec.CommandContext(ctx, ficusBin, "serve", "bus", "-c", cfgPath)
	h.pass(srv)
	out, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); srv.Wait() })
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.Contains(sc.Text(), "bus listening on nats://"+addr) {
		t.Fatalf("ficus serve bus: %q", sc.Text())
	}

	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.Connect(ctx, cfg.Events, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var fixed atomic.Bool
	handled := make(chan struct{}, 1)
	consumeCtx, stopConsumer := context.WithCancel(ctx)
	defer stopConsumer()
	go b.Consume(consumeCtx, "e2e-stock", func(ctx context.Context, e event.Event) error {
		if !fixed.Load() {
			return errors.New("handler bug")
		}
		select {
		case handled <- struct{}{}:
		default:
		}
		return nil
	}, bus.ConsumerOptions{MaxAttempts: 2, Backoff: func(int) time.Duration { return 50 * time.Millisecond }})
	ev, err := event.New("/e2e", contract.TypeStockChanged, "SKU-1", contract.StockChanged{SKU: "SKU-1", OnHand: 1, Version: 1, Name: "x", PriceCents: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}

	var list string
	for deadline := time.Now().Add(30 * time.Second); ; {
		o, err := exec.Command(ficusBin, "events", "dlq", "list", "-c", cfgPath).CombinedOutput()
		list = string(o)
		if err == nil && strings.Contains(list, ev.ID) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the poison event never showed in dlq list:\n%s (%v)", list, err)
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
	for _, want := range []string{"e2e-stock", "handler bug", "1 dead letter(s)"} {
		if !strings.Contains(list, want) {
			t.Errorf("dlq list lacks %q:\n%s", want, list)
		}
	}

	fixed.Store(true)
	o, err := exec.Command(ficusBin, "events", "dlq", "replay", ev.ID, "-c", cfgPath).CombinedOutput()
	if err != nil || !strings.Contains(string(o), "replayed dead letter") {
		t.Fatalf("dlq replay: %v\n%s", err, o)
	}
	select {
	case <-handled:
	case <-time.After(30 * time.Second):
		t.Fatal("the replayed event never reached the fixed handler")
	}
	o, err = exec.Command(ficusBin, "events", "dlq", "replay", "no-such-id", "-c", cfgPath).CombinedOutput()
	if exitStatus(err) != 1 || !strings.Contains(string(o), `no dead letter matches "no-such-id"`) {
		t.Errorf("replay of an unknown id: exit %d\n%s", exitStatus(err), o)
	}
}
