package main

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestShortMonolithRestartCostsSeconds: under steady load through the facade, the monolith is
// killed with SIGKILL and ficus up restarts it within a second. 2xx answers must resume within
// 3 s of the monolith being ready again, every request sent after that must succeed, and the
// facade must not write a log line per failed request.
func TestShortMonolithRestartCostsSeconds(t *testing.T) {
	dir := t.TempDir()
	h := holdPorts(t, "facade", "admin", "monolith", "bus")
	cfgPath := upConfig(t, dir, h, "")
	cmd := exec.Command(ficusBin, "up", "-c", cfgPath)
	h.pass(cmd)
	up := startFicus(t, cmd)
	up.out.waitFor(t, "Ficus is up.", 90*time.Second)

	type outcome struct {
		sent   time.Time
		status int // 0: no answer
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		ok       = make(chan struct{}, 1) // a 2xx arrived
	)
	ctx, stop := context.WithCancel(context.Background())
	var load sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	itemsURL := "http://" + h.addr("facade") + "/api/inventory/items"
	for range 8 {
		load.Go(func() {
			for ctx.Err() == nil {
				sent := time.Now()
				status := 0
				if resp, err := client.Get(itemsURL); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				outcomes = append(outcomes, outcome{sent, status})
				mu.Unlock()
				if status/100 == 2 {
					select {
					case ok <- struct{}{}:
					default:
					}
				}
				if status/100 != 2 {
					time.Sleep(10 * time.Millisecond) // don't spin on failures
				}
			}
		})
	}
	t.Cleanup(func() { stop(); load.Wait() })
	select {
	case <-ok:
	case <-time.After(10 * time.Second):
		t.Fatalf("no 2xx through the facade before the kill:\n%s", up.out)
	}
	logBefore := len(strings.Split(up.out.String(), "\n"))

	pid := findProcess(t, "serve monolith -c "+cfgPath)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()

	// Ready again: a new monolith process answers /readyz (directly, not through the facade).
	var ready time.Time
	readyClient := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); ready.IsZero(); {
		if time.Now().After(deadline) {
			t.Fatalf("the monolith was not back within 30s:\n%s", up.out)
		}
		if pids := processesWith("serve monolith -c " + cfgPath); len(pids) > 0 && pids[0] != pid {
			if resp, err := readyClient.Get("http://" + h.addr("monolith") + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ready = time.Now()
					break
				}
			}
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	t.Logf("monolith killed, ready again %s later", ready.Sub(killed).Round(time.Millisecond))

	// Let the load run on past the 3 s the facade has to recover, and 2 s more.
	time.Sleep(5 * time.Second)
	stop()
	load.Wait()

	mu.Lock()
	defer mu.Unlock()
	var firstOK time.Time
	failedLate, late := 0, 0
	for _, o := range outcomes {
		if o.sent.Before(killed) {
			continue
		}
		if o.status/100 == 2 && !o.sent.Before(ready) && (firstOK.IsZero() || o.sent.Before(firstOK)) {
			firstOK = o.sent
		}
		if o.sent.After(ready.Add(3 * time.Second)) {
			late++
			if o.status/100 != 2 {
				failedLate++
			}
		}
	}
	switch {
	case firstOK.IsZero():
		t.Fatalf("no 2xx through the facade after the monolith was ready again:\n%s", up.out)
	case firstOK.Sub(ready) > 3*time.Second:
		t.Errorf("2xx resumed %s after the monolith was ready; want within 3s", firstOK.Sub(ready))
	}
	if late == 0 || failedLate > 0 {
		t.Errorf("%d of %d requests sent more than 3s after the monolith was ready failed", failedLate, late)
	}
	// Log volume is bounded whatever the request rate: no line per failed request.
	lines := strings.Split(up.out.String(), "\n")[logBefore:]
	if len(lines) > 60 {
		t.Errorf("%d log lines during a short restart; want a bounded few:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}
