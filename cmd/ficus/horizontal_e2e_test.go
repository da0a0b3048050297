package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
