package facade

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostileConfig fronts one backend with an attempt timeout shorter than the body timeout
// and a breaker that opens after five failures: the setting in which five slow clients
// used to take the shop down.
func hostileConfig(backend string, extra string) string {
	return fmt.Sprintf(`
facade: { body_timeout: 500ms, max_body_bytes: 4096 %s}
backends:
  monolith:
    url: %s
    timeout: 200ms
    retry: { attempts: 3, backoff: 1ms, max_backoff: 2ms }
    breaker: { consecutive_failures: 5, open_for: 1m }
routes:
  - match: { path: / }
    to: monolith
`, extra, backend)
}

// rawExchange sends head (a request line and headers, without the blank line) and body on a
// fresh connection, then reads the response, within 5s.
func rawExchange(t *testing.T, addr, head, body string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, head+"\r\n"+body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", strings.SplitN(head, "\r\n", 2)[0], err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// slowUpload declares a body of 1,000 bytes and sends it a byte every 20ms, as the attack
// in issue 7 did, until the facade answers; it returns the status.
func slowUpload(addr string) (int, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "POST /api/orders HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"); err != nil {
		return 0, err
	}
	answered := make(chan struct{})
	defer close(answered)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range 1000 {
			select {
			case <-answered:
				return
			case <-tick.C:
			}
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestHostileClientsCannotTakeTheBackendDown replays issue 7's attack: 20 POSTs with a
// malformed chunked body and 20 uploads too slow to finish. Each is answered as the
// client's error (400, 408), none counts against the backend (its breaker stays closed, no
// backend error or retry is counted), and the shop keeps serving.
func TestHostileClientsCannotTakeTheBackendDown(t *testing.T) {
	b := startBackend(t, "monolith")
	h := startFacade(t, hostileConfig(b.URL(), ""))
	addr := strings.TrimPrefix(h.proxy.URL, "http://")

	for i := range 20 {
		resp, body := rawExchange(t, addr, "POST /api/orders HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"body_malformed"`) {
			t.Fatalf("malformed chunk %d: %d %s, want 400 body_malformed", i, resp.StatusCode, body)
		}
	}
	var wg sync.WaitGroup
	statuses := make(chan string, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, err := slowUpload(addr)
			statuses <- fmt.Sprint(status, err)
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != "408 <nil>" {
			t.Fatalf("slow upload answered %s, want 408 <nil>", s)
		}
	}

	if status, body, _ := h.get("GET", "/api/items", nil); status != 200 || body != "monolith" {
		t.Fatalf("GET after the attack: %d %q", status, body)
	}
	if st := h.f.Backends()[0].Breaker; st != "closed" {
		t.Fatalf("breaker %s after client errors, want closed", st)
	}
	for _, code := range codes {
		if got := h.metric(`ficus_facade_errors_total{backend="monolith",code="` + code + `",route="/"}`); got != 0 {
			t.Errorf("backend error %s counted %v times for the clients' failures", code, got)
		}
	}
	if got := h.metric(`ficus_backend_retries_total{backend="monolith"}`); got != 0 {
		t.Errorf("%v retries spent on the clients' failures", got)
	}
	if got := h.metric(`ficus_backend_breaker_transitions_total{backend="monolith",state="open"}`); got > 0 {
		t.Errorf("the breaker opened %v times", got)
	}
	for reason, want := range map[string]float64{"body_malformed": 20, "body_timeout": 20} {
		if got := h.metric(`ficus_facade_client_errors_total{reason="` + reason + `",route="/"}`); got != want {
			t.Errorf("client errors %s = %v, want %v", reason, got, want)
		}
	}
	if got := h.metric(`ficus_facade_requests_total{backend="monolith",code="5xx",route="/"}`); got > 0 {
		t.Errorf("%v client failures counted as 5xx", got)
	}
}

// TestSlowUploadsHoldNothingForLong sends many slow uploads at once: each is answered 408
// within the body timeout, and afterwards the facade's goroutines and heap are back near
// where they started, so slow clients cannot pile up memory.
func TestSlowUploadsHoldNothingForLong(t *testing.T) {
	b := startBackend(t, "monolith")
	// A generous attempt timeout: connecting 200 uploads at once to the backend may take a
	// while on a busy machine, and that is the backend's time.
	h := startFacade(t, strings.Replace(hostileConfig(b.URL(), ""), "timeout: 200ms", "timeout: 5s", 1))
	addr := strings.TrimPrefix(h.proxy.URL, "http://")
	h.get("GET", "/warm-up", nil)

	settle := func() (goroutines int, heap uint64) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return runtime.NumGoroutine(), m.HeapInuse
	}
	g0, heap0 := settle()
	const uploads = 200
	start := time.Now()
	var wg sync.WaitGroup
	failures := make(chan string, uploads)
	for range uploads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, err := slowUpload(addr); status != http.StatusRequestTimeout {
				failures <- fmt.Sprint(status, err)
			}
		}()
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Fatalf("slow upload answered %s, want 408", f)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("%d slow uploads took %s to be refused; the body timeout is 500ms", uploads, d)
	}
	// Once answered, nothing of them remains: no goroutine per upload, no heap per upload.
	deadline := time.Now().Add(3 * time.Second)
	for {
		g, heap := settle()
		if g <= g0+10 && heap <= heap0+8<<20 {
			t.Logf("goroutines %d → %d, heap in use %d → %d KiB", g0, g, heap0>>10, heap>>10)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d slow uploads: goroutines %d (were %d), heap in use %d KiB (was %d KiB)", uploads, g, g0, heap>>10, heap0>>10)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := h.f.Backends()[0].Breaker; st != "closed" {
		t.Fatalf("breaker %s after slow uploads, want closed", st)
	}
}

// TestBodyTimeoutEndsOnceTheBodyIsIn checks the body timeout bounds the body only: a backend
// that takes longer than it to answer a request whose body arrived in time is not cut off.
func TestBodyTimeoutEndsOnceTheBodyIsIn(t *testing.T) {
	b := startBackend(t, "monolith")
	b.set(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(800 * time.Millisecond) // longer than the body timeout
		io.WriteString(w, "done")
	})
	h := startFacade(t, strings.Replace(hostileConfig(b.URL(), ""), "timeout: 200ms", "timeout: 5s", 1))
	for _, chunked := range []bool{false, true} {
		var body io.Reader = strings.NewReader(`{"sku":"A-1"}`)
		if chunked {
			body = io.MultiReader(body) // hides the length: sent chunked
		}
		resp := h.do("POST", "/api/orders", nil, body)
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != "done" {
			t.Fatalf("chunked %v: %d %q, want the backend's late 200", chunked, resp.StatusCode, got)
		}
	}
}

// TestTooLargeBodyIs413 checks facade.max_body_bytes: a declared length over it is refused
// before any backend sees the request, a chunked body that grows past it is cut off, and
// neither counts against the backend.
func TestTooLargeBodyIs413(t *testing.T) {
	b := startBackend(t, "monolith")
	h := startFacade(t, hostileConfig(b.URL(), ""))
	big := strings.Repeat("x", 4097)

	resp := h.do("PUT", "/api/items/1", nil, strings.NewReader(big))
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(got), `"body_too_large"`) {
		t.Fatalf("declared length: %d %s, want 413 body_too_large", resp.StatusCode, got)
	}
	if b.hits.Load() != 0 {
		t.Fatal("a body declared too large reached the backend")
	}
	resp = h.do("PUT", "/api/items/1", nil, io.MultiReader(strings.NewReader(big)))
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked: %d %s, want 413", resp.StatusCode, got)
	}
	// Exactly the limit passes.
	resp = h.do("PUT", "/api/items/1", nil, io.MultiReader(strings.NewReader(big[:4096])))
	resp.Body.Close()
	if resp.StatusCode != 200 || b.seen().body != big[:4096] {
		t.Fatalf("a body of exactly max_body_bytes: %d, backend got %d bytes", resp.StatusCode, len(b.seen().body))
	}
	if got := h.metric(`ficus_facade_client_errors_total{reason="body_too_large",route="/"}`); got != 2 {
		t.Fatalf("body_too_large counted %v times, want 2", got)
	}
	if st := h.f.Backends()[0].Breaker; st != "closed" {
		t.Fatalf("breaker %s", st)
	}
}

// TestClientThatGoesAwayIsNeverSent499 has a client send half a body and close its side of
// the connection: the facade answers 400, a standard status (499 appears only in the
// metrics and the log), and nothing counts against the backend.
func TestClientThatGoesAwayIsNeverSent499(t *testing.T) {
	b := startBackend(t, "monolith")
	h := startFacade(t, hostileConfig(b.URL(), ""))
	c, err := net.Dial("tcp", strings.TrimPrefix(h.proxy.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST /api/orders HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\nonly ten b")
	c.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"client_closed"`) {
		t.Fatalf("answered %d %s, want 400 client_closed", resp.StatusCode, body)
	}
	if got := h.metric(`ficus_facade_client_errors_total{reason="client_closed",route="/"}`); got != 1 {
		t.Fatalf("client_closed counted %v times", got)
	}
	if got := h.metric(`ficus_facade_errors_total{backend="monolith",code="backend_unreachable",route="/"}`); got != 0 {
		t.Fatalf("the client's going away was held against the backend")
	}
	eventually(t, "the client error is logged", func() bool {
		return strings.Contains(h.logs.String(), "reason=client_closed status=499")
	})
}
