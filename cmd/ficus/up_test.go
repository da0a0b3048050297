package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stuckBus is a component that runs (ficus serve bus, on a port the test holds) but whose
// readiness check never passes.
func stuckBus(t *testing.T) (*component, string) {
	t.Helper()
	h := holdPorts(t, "bus")
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`backends: { monolith: { url: http://127.0.0.1:1 } }
routes: [{ match: { path: / }, to: monolith }]
events: { bus: embedded, embedded: { listen: %s, store: data/nats } }
`, h.addr("bus"))), 0o644)
	return &component{
		name: "stuck", args: []string{"serve", "bus", "-c", cfgPath}, env: os.Environ(), files: h.files,
		ready:  func(context.Context) error { return errors.New("not ready, ever") },
		exited: make(chan error, 1),
	}, cfgPath
}

// TestStartAllGivesUpOnAComponentThatNeverGetsReady: up stops everything and says why within
// the ready timeout, rather than hang (its cancel was once shadowed).
func TestStartAllGivesUpOnAComponentThatNeverGetsReady(t *testing.T) {
	c, cfgPath := stuckBus(t)
	var out bytes.Buffer
	s := &supervisor{self: ficusBin, w: &out}
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	started := time.Now()
	err := s.startAll(ctx, []*component{c}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "stuck did not become ready within 1s (-ready-timeout); stopped everything") ||
		!strings.Contains(err.Error(), "not ready, ever") {
		t.Fatalf("startAll: %v", err)
	}
	if d := time.Since(started); d > 5*time.Second {
		t.Errorf("startAll took %s with a 1s ready timeout", d)
	}
	stopped := make(chan struct{})
	go func() { stop(); s.wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("the component's process did not stop")
	}
	if left := processesWith(cfgPath); len(left) > 0 {
		t.Errorf("still running: %v", left)
	}
}

// TestStartAllReportsAComponentThatExits: a component that exits before it is ready fails
// ficus up at once, with the process's last lines, instead of restarting until the timeout.
func TestStartAllReportsAComponentThatExits(t *testing.T) {
	c, _ := stuckBus(t)
	c.args = []string{"serve", "bus", "-c", filepath.Join(t.TempDir(), "missing.yaml")}
	var out bytes.Buffer
	s := &supervisor{self: ficusBin, w: &out}
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	err := s.startAll(ctx, []*component{c}, time.Minute)
	stop()
	s.wait()
	if err == nil || !strings.Contains(err.Error(), "stuck did not become ready; stopped everything: it exited (exit status 1)") ||
		!strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("startAll: %v\n%s", err, out.String())
	}
}
