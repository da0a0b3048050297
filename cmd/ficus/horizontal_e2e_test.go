package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficus-project/ficus/facade"
)

// reloadBound is how soon after config.yaml changes every facade must serve the new route:
// the watcher's debounce (100ms) and the load, with room for a loaded test machine.
const reloadBound = 3 * time.Second

// TestTwoFacadesFlipTogether runs two `ficus serve facade` processes on one config.yaml,
// sends load through both, and flips the route from one backend to another in the file:
// both follow within the reload bound, and no request fails meanwhile.
func TestTwoFacadesFlipTogether(t *testing.T) {
	backend := func(name string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		return s.URL
	}
	oldURL, newURL := backend("old"), backend("new")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	config := func(to string) string {
		return fmt.Sprintf("facade: { admin: { token_env: E2E_TOKEN } }\nbackends:\n  old: { url: %s }\n  new: { url: %s }\nroutes:\n  - match: { path: / }\n    to: %s\n", oldURL, newURL, to)
	}
	writeAtomically(t, cfgPath, config("old"))

	type facadeProc struct {
		url      string
		served   [2]atomic.Int64 // answers from old, new
		failed   atomic.Int64
		firstNew atomic.Int64 // UnixNano of the first answer from new
	}
	var facades []*facadeProc
	for range 2 {
		ports := holdPorts(t, "facade", "admin")
		cmd := exec.Command(ficusBin, "serve", "facade", "-c", cfgPath)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "E2E_TOKEN=horizontal")
		ports.pass(cmd)
		p := startFicus(t, cmd)
		p.out.waitFor(t, "facade listening", 20*time.Second)
		facades = append(facades, &facadeProc{url: "http://" + ports.addr("facade")})
	}

	// Load: two clients per facade, each request on a kept-alive connection.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	t.Cleanup(client.CloseIdleConnections)
	var errs sync.Map
	for _, f := range facades {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := client.Get(f.url + "/")
					if err != nil {
						f.failed.Add(1)
						errs.Store(err.Error(), true)
						continue
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch {
					case resp.StatusCode != 200:
						f.failed.Add(1)
						errs.Store(fmt.Sprintf("%d %s", resp.StatusCode, body), true)
					case string(body) == "new":
						f.served[1].Add(1)
						f.firstNew.CompareAndSwap(0, time.Now().UnixNano())
					default:
						f.served[0].Add(1)
					}
				}
			}()
		}
	}
	waitUntil(t, "both facades serve load from old", 10*time.Second, func() bool {
		return facades[0].served[0].Load() > 20 && facades[1].served[0].Load() > 20
	})

	flipped := time.Now()
	writeAtomically(t, cfgPath, config("new"))
	waitUntil(t, "both facades serve from new", reloadBound, func() bool {
		return facades[0].firstNew.Load() != 0 && facades[1].firstNew.Load() != 0
	})
	// Keep the load on a little after the flip, then count.
	before := [2]int64{facades[0].served[1].Load(), facades[1].served[1].Load()}
	waitUntil(t, "more answers after the flip", 10*time.Second, func() bool {
		return facades[0].served[1].Load() > before[0]+20 && facades[1].served[1].Load() > before[1]+20
	})
	close(stop)
	wg.Wait()
	for i, f := range facades {
		t.Logf("facade %d: switched %v after the write; %d answers from old, %d from new, %d failed",
			i, time.Duration(f.firstNew.Load()-flipped.UnixNano()), f.served[0].Load(), f.served[1].Load(), f.failed.Load())
		if f.failed.Load() != 0 {
			errs.Range(func(k, _ any) bool { t.Errorf("facade %d: %v", i, k); return true })
		}
	}
	// After the flip every new request goes to new, on both.
	for i, f := range facades {
		for range 10 {
			resp, err := client.Get(f.url + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "new" || resp.Header.Get("Ficus-Backend") != "new" {
				t.Fatalf("facade %d after the flip: %q from %q", i, body, resp.Header.Get("Ficus-Backend"))
			}
		}
	}
}

// writeAtomically replaces path with content by rename, as an editor or a deploy tool does.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls cond every 10ms until it holds, failing the test after timeout.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTwoFacadesRollBackTogether runs two `ficus serve facade` processes on one config.yaml
// with a canary to a backend that answers 500. Traffic goes through facade A alone until A
// rolls the canary back; A writes the rollback into config.yaml, and facade B, which saw
// none of the failures, stops sending the canary any share within the reload bound.
func TestTwoFacadesRollBackTogether(t *testing.T) {
	var failingHits atomic.Int64
	primary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "primary") }))
	t.Cleanup(primary.Close)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/x" { // the clients' requests, not the facades' health checks
			failingHits.Add(1)
		}
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	// min_samples is above what is sent through B before the rollback, so B cannot trip
	// the gate on its own traffic: only A's decision can reach it.
	writeAtomically(t, cfgPath, fmt.Sprintf(`# Two facades, one file.
facade: { admin: { token_env: E2E_TOKEN } }
backends:
  primary: { url: %s }
  candidate: { url: %s, breaker: { consecutive_failures: 100000 } } # its errors reach the gates
routes:
  - name: items
    match: { path: / }
    to: primary
    canary: { to: candidate, percent: 50 }
    promote: { gates: { window: 10s, min_samples: 40, max_error_rate: 0.1 } }
`, primary.URL, failing.URL))

	type facadeProc struct{ url, admin string }
	var facades []facadeProc
	for range 2 {
		ports := holdPorts(t, "facade", "admin")
		cmd := exec.Command(ficusBin, "serve", "facade", "-c", cfgPath)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "E2E_TOKEN=horizontal")
		ports.pass(cmd)
		p := startFicus(t, cmd)
		p.out.waitFor(t, "facade listening", 20*time.Second)
		facades = append(facades, facadeProc{url: "http://" + ports.addr("facade"), admin: "http://" + ports.addr("admin")})
	}
	a, b := facades[0], facades[1]
	client := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	send := func(url string) string {
		t.Helper()
		resp, err := client.Get(url + "/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("Ficus-Backend")
	}
	route := func(admin string) facade.RouteInfo {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rt, err := facade.FetchRoutes(ctx, client, admin, "horizontal")
		if err != nil {
			t.Fatal(err)
		}
		return rt.Routes[0]
	}

	// B runs the canary before the rollback: some of its requests reach the candidate.
	toCandidate := 0
	for range 20 {
		if send(b.url) == "candidate" {
			toCandidate++
		}
	}
	if toCandidate == 0 {
		t.Fatal("facade B sent the 50% canary nothing before the rollback")
	}
	// Through A alone until it rolls back.
	waitUntil(t, "facade A to roll the canary back", 10*time.Second, func() bool {
		send(a.url)
		return route(a.admin).RolledBack != nil || route(a.admin).Canary.Percent == 0
	})
	rolledBack := time.Now()
	waitUntil(t, "facade B to serve the canary at 0%", reloadBound, func() bool {
		return route(b.admin).Canary.Percent == 0
	})
	t.Logf("facade B at 0%% %v after A rolled back", time.Since(rolledBack).Round(time.Millisecond))
	before := failingHits.Load()
	for range 100 {
		if got := send(b.url); got != "primary" {
			t.Fatalf("through B after the rollback: answered by %q", got)
		}
	}
	if n := failingHits.Load() - before; n != 0 {
		t.Errorf("B sent the rolled-back candidate %d requests", n)
	}
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Two facades, one file.", "# its errors reach the gates",
		"canary: { to: candidate, percent: 0 } # rolled back from 50% at ", "by facade " + strings.TrimPrefix(a.url, "http://") + " pid "} {
		if !strings.Contains(string(data), want) {
			t.Errorf("config.yaml lacks %q:\n%s", want, data)
		}
	}
	// ficus promote sees the canary at 0 and says what to do instead of promoting.
	out, err := exec.Command(ficusBin, "promote", "-c", cfgPath, "-admin", a.admin, "items").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "canary to candidate is at 0%") {
		t.Errorf("ficus promote after the rollback: %v\n%s", err, out)
	}
}
