package facade

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/problem"
)

func TestRouting(t *testing.T) {
	mono, inv, invRead, pay := startBackend(t, "monolith"), startBackend(t, "inventory"), startBackend(t, "inventory-read"), startBackend(t, "payments")
	h := startFacade(t, fmt.Sprintf(`
backends:
  monolith: { url: %s }
  inventory: { url: %s }
  inventory-read: { url: %s/base/ }
  payments: { url: %s }
routes:
  - match: { path: /api/inventory }
    to: inventory
  - match: { path: /api/inventory, methods: [GET, HEAD] }
    to: inventory-read
  - match: { path: /api/payments, headers: { X-Canary: "yes" } }
    to: payments
  - name: default
    match: { path: / }
    to: monolith
`, mono.URL(), inv.URL(), invRead.URL(), pay.URL()))

	tests := []struct {
		method, path string
		header       http.Header
		want         string
		wantURI      string
	}{
		{"GET", "/api/inventory/items/1?x=1", nil, "inventory-read", "/base/api/inventory/items/1?x=1"},
		{"POST", "/api/inventory/items", nil, "inventory", "/api/inventory/items"},
		{"GET", "/api/inventoryx", nil, "monolith", "/api/inventoryx"},
		{"GET", "/api/payments/p1", nil, "monolith", "/api/payments/p1"},
		{"GET", "/api/payments/p1", http.Header{"X-Canary": {"yes"}}, "payments", "/api/payments/p1"},
		{"DELETE", "/", nil, "monolith", "/"},
	}
	backends := map[string]*testBackend{"monolith": mono, "inventory": inv, "inventory-read": invRead, "payments": pay}
	for _, tt := range tests {
		status, body, hdr := h.get(tt.method, tt.path, tt.header)
		if status != 200 || body != tt.want || hdr.Get("Ficus-Backend") != tt.want {
			t.Errorf("%s %s: status %d, body %q, Ficus-Backend %q; want %s", tt.method, tt.path, status, body, hdr.Get("Ficus-Backend"), tt.want)
			continue
		}
		if got := backends[tt.want].seen().uri; got != tt.wantURI {
			t.Errorf("%s %s: backend saw %q, want %q", tt.method, tt.path, got, tt.wantURI)
		}
	}
}

func TestNoRouteIsProblem404(t *testing.T) {
	inv := startBackend(t, "inventory")
	h := startFacade(t, fmt.Sprintf(`
backends:
  inventory: { url: %s }
routes:
  - match: { path: /api/inventory }
    to: inventory
`, inv.URL()))
	status, body, hdr := h.get("GET", "/api/orders", nil)
	if status != 404 || hdr.Get("Content-Type") != problem.ContentType {
		t.Fatalf("status %d, content type %q", status, hdr.Get("Content-Type"))
	}
	var p problem.Problem
	if err := json.Unmarshal([]byte(body), &p); err != nil || p.Code != "no_route" {
		t.Fatalf("body %s: %v", body, err)
	}
	if hdr.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-ID on a facade error")
	}
	if inv.hits.Load() != 0 {
		t.Fatal("backend hit")
	}
}

func TestPathTricksCannotReachTheWrongBackend(t *testing.T) {
	inv, orders, mono := startBackend(t, "inventory"), startBackend(t, "orders"), startBackend(t, "monolith")
	h := startFacade(t, fmt.Sprintf(`
backends:
  inventory: { url: %s }
  orders: { url: %s }
  monolith: { url: %s }
routes:
  - match: { path: /api/inventory }
    to: inventory
  - match: { path: /api/orders }
    to: orders
  - match: { path: / }
    to: monolith
`, inv.URL(), orders.URL(), mono.URL()))
	addr := strings.TrimPrefix(h.proxy.URL, "http://")

	// Each of these is routed on, and forwarded with, its cleaned path.
	routed := []struct {
		target  string
		backend *testBackend
		uri     string
	}{
		{"/api/inventory/../orders/1", orders, "/api/orders/1"},
		{"/api/inventory/%2e%2e/orders/1", orders, "/api/orders/1"},
		{"/api/inventory/%2E%2E/%2e%2e/api/orders", orders, "/api/orders"},
		{"//api//orders//1", orders, "/api/orders/1"},
		{"/api/orders/../inventory/x", inv, "/api/inventory/x"},
		{"/api/orders/./../../api/inventory", inv, "/api/inventory"},
		{"/../../api/orders", orders, "/api/orders"},
		{"/api/inventoryx/../orders", orders, "/api/orders"},
		{"/api/inventory/a%20b", inv, "/api/inventory/a%20b"},
	}
	for _, tt := range routed {
		before := map[*testBackend]int64{inv: inv.hits.Load(), orders: orders.hits.Load(), mono: mono.hits.Load()}
		if status := rawRequest(t, addr, "GET", tt.target); status != 200 {
			t.Errorf("GET %s: status %d", tt.target, status)
			continue
		}
		for b, n := range before {
			if got := b.hits.Load() - n; (b == tt.backend) != (got == 1) {
				t.Errorf("GET %s: backend %s hit %d times", tt.target, b.name, got)
			}
		}
		if got := tt.backend.seen().uri; got != tt.uri {
			t.Errorf("GET %s: %s saw %q, want %q", tt.target, tt.backend.name, got, tt.uri)
		}
	}

	// Encoded slashes and backslashes read differently on different servers: refused.
	total := func() int64 { return inv.hits.Load() + orders.hits.Load() + mono.hits.Load() }
	before := total()
	for _, target := range []string{
		"/api/inventory%2f..%2forders",
		"/api/inventory/..%2Forders",
		"/api/inventory/..%5corders",
		"/api/inventory/..;/orders",
	} {
		if status := rawRequest(t, addr, "GET", target); status != 400 {
			t.Errorf("GET %s: status %d, want 400", target, status)
		}
	}
	if total() != before {
		t.Fatal("an ambiguous path reached a backend")
	}
}

func TestForwardingHeaders(t *testing.T) {
	b := startBackend(t, "b")
	b.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Kept", "1")
		io.WriteString(w, "ok")
	})
	h := startFacade(t, fmt.Sprintf(`
backends:
  b: { url: %s }
routes:
  - match: { path: / }
    to: b
`, b.URL()))

	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	resp := h.do("GET", "/x", http.Header{
		"Connection":       {"X-Hop, Upgrade-Insecure"},
		"X-Hop":            {"secret"},
		"Keep-Alive":       {"timeout=5"},
		"Proxy-Connection": {"keep-alive"},
		"Te":               {"gzip"},
		"X-Forwarded-For":  {"203.0.113.7"},
		"Traceparent":      {tp},
		"Tracestate":       {"vendor=1"},
		"X-End-To-End":     {"kept"},
	}, nil)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	seen := b.seen().header
	for _, hop := range []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Connection", "Te", "Upgrade-Insecure"} {
		if v := seen.Get(hop); v != "" {
			t.Errorf("hop-by-hop %s reached the backend: %q", hop, v)
		}
	}
	if got := seen.Get("X-End-To-End"); got != "kept" {
		t.Errorf("X-End-To-End = %q", got)
	}
	if got := seen.Get("X-Forwarded-For"); got != "203.0.113.7, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the client's appended", got)
	}
	if got := seen.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	if got := seen.Get("X-Forwarded-Host"); got != strings.TrimPrefix(h.proxy.URL, "http://") {
		t.Errorf("X-Forwarded-Host = %q", got)
	}
	if got := seen.Get("Traceparent"); got != tp {
		t.Errorf("traceparent = %q", got)
	}
	if got := seen.Get("Tracestate"); got != "vendor=1" {
		t.Errorf("tracestate = %q", got)
	}
	id := seen.Get("X-Request-Id")
	if id == "" || resp.Header.Get("X-Request-Id") != id {
		t.Errorf("request id: backend %q, response %q", id, resp.Header.Get("X-Request-Id"))
	}
	if got := resp.Header.Get("X-Resp-Hop"); got != "" {
		t.Errorf("hop-by-hop response header reached the client: %q", got)
	}
	if resp.Header.Get("X-Kept") != "1" || resp.Header.Get("Ficus-Backend") != "b" {
		t.Errorf("response headers %v", resp.Header)
	}

	// Ids are generated fresh per request, and a client's id is kept.
	_, _, h2 := h.get("GET", "/x", nil)
	if id2 := h2.Get("X-Request-Id"); id2 == "" || id2 == id {
		t.Errorf("second generated id %q (first %q)", id2, id)
	}
	_, _, h3 := h.get("GET", "/x", http.Header{"X-Request-Id": {"client-id-1"}})
	if h3.Get("X-Request-Id") != "client-id-1" || b.seen().header.Get("X-Request-Id") != "client-id-1" {
		t.Errorf("client id not propagated: response %q, backend %q", h3.Get("X-Request-Id"), b.seen().header.Get("X-Request-Id"))
	}
	if vals := h3.Values("X-Request-Id"); len(vals) != 1 {
		t.Errorf("X-Request-ID sent %d times", len(vals))
	}
}

func TestRequestIDsAreUnique(t *testing.T) {
	s := newIDSource()
	seen := map[string]bool{}
	for range 10000 {
		id := s.next()
		if seen[id] || !validID(id) {
			t.Fatalf("id %q repeated or invalid", id)
		}
		seen[id] = true
	}
	if validID("has space") || validID(strings.Repeat("x", 129)) || validID("") {
		t.Fatal("validID accepts bad ids")
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	b := startBackend(t, "slow")
	started, cancelled := make(chan struct{}), make(chan struct{})
	b.set(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(10 * time.Second):
		}
	})
	h := startFacade(t, fmt.Sprintf(`
backends:
  slow: { url: %s, timeout: 20s }
routes:
  - match: { path: / }
    to: slow
`, b.URL()))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.proxy.URL+"/wait", nil)
	go func() {
		<-started
		cancel()
	}()
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("request succeeded after cancel")
	}
	select {
	case <-cancelled:
	case <-time.After(3 * time.Second):
		t.Fatal("the backend never saw the request cancelled")
	}
}

func TestTimeoutIs504(t *testing.T) {
	b := startBackend(t, "slow")
	b.set(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	h := startFacade(t, fmt.Sprintf(`
backends:
  slow: { url: %s, timeout: 50ms }
routes:
  - match: { path: / }
    to: slow
`, b.URL()))
	start := time.Now()
	status, body, hdr := h.get("GET", "/", nil)
	if status != 504 || !strings.Contains(body, `"backend_timeout"`) || hdr.Get("Content-Type") != problem.ContentType {
		t.Fatalf("status %d body %s", status, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
	if hdr.Get("Ficus-Backend") != "slow" {
		t.Fatalf("Ficus-Backend = %q", hdr.Get("Ficus-Backend"))
	}
	if got := h.metric(`ficus_facade_errors_total{backend="slow",code="backend_timeout",route="/"}`); got != 1 {
		t.Fatalf("timeout error metric = %v", got)
	}
}

func TestUnreachableIs502(t *testing.T) {
	// Without a health check, which would soon refuse the dead backend's requests itself.
	h := startFacade(t, fmt.Sprintf(`
backends:
  dead: { url: %s, health: { disabled: true } }
routes:
  - match: { path: / }
    to: dead
`, deadURL(t)))
	status, body, _ := h.get("GET", "/", nil)
	if status != 502 || !strings.Contains(body, `"backend_unreachable"`) {
		t.Fatalf("status %d body %s", status, body)
	}
	if strings.Contains(body, "127.0.0.1") {
		t.Fatalf("the problem leaks the backend address: %s", body)
	}
}

// TestStreamingLargeResponse sends 100 MB through the facade, slowly, and checks the
// facade never holds more than a small part of it.
func TestStreamingLargeResponse(t *testing.T) {
	const total = 100 << 20
	b := startBackend(t, "big")
	b.set(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		fl := w.(http.Flusher)
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			if sent%(8<<20) == 0 {
				fl.Flush()
				time.Sleep(5 * time.Millisecond) // a slow producer
			}
		}
	})
	h := startFacade(t, fmt.Sprintf(`
backends:
  big: { url: %s }
routes:
  - match: { path: / }
    to: big
`, b.URL()))

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
			}
		}
	}()
	resp := h.do("GET", "/big", nil, nil)
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	close(stop)
	<-sampled
	if err != nil || n != total {
		t.Fatalf("received %d bytes, err %v", n, err)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	grew := int64(peak) - int64(before.HeapInuse)
	t.Logf("allocated %d KiB during the stream; heap in use grew by at most %d KiB", allocated>>10, grew>>10)
	if allocated > 20<<20 {
		t.Fatalf("allocated %d MiB while streaming 100 MiB: the body is being buffered", allocated>>20)
	}
	if grew > 20<<20 {
		t.Fatalf("heap in use grew by %d MiB while streaming 100 MiB", grew>>20)
	}
}

// TestInternalPathsStayInternal checks the backends' own endpoints are not reachable through
// a route that does not name them: the catch-all route answers them 404, a route written for
// one of them serves it, and facade.internal_paths can change the list.
func TestInternalPathsStayInternal(t *testing.T) {
	mono, ops := startBackend(t, "monolith"), startBackend(t, "ops")
	cfg := fmt.Sprintf(`
backends:
  monolith: { url: %s }
  ops: { url: %s }
routes:
  - match: { path: /debug/vars }
    to: ops
  - match: { path: / }
    to: monolith
`, mono.URL(), ops.URL())
	h := startFacade(t, cfg)
	for _, p := range []string{"/metrics", "/healthz", "/readyz", "/livez", "/debug/pprof/heap", "/metrics/", "/api/../metrics"} {
		status, body, hdr := h.get("GET", p, nil)
		if status != 404 || !strings.Contains(body, `"no_route"`) || hdr.Get("X-Request-Id") == "" {
			t.Errorf("GET %s: %d %s, want 404 no_route", p, status, body)
		}
	}
	if mono.hits.Load() != 0 {
		t.Fatalf("the monolith's internal endpoints were reached %d times", mono.hits.Load())
	}
	if got := h.metric(`ficus_facade_rejected_total{reason="internal_path"}`); got != 7 {
		t.Fatalf("internal_path rejections counted %v, want 7", got)
	}
	// Paths that merely start with the same letters are not internal.
	for _, p := range []string{"/metricsx", "/api/metrics", "/readyzone"} {
		if status, body, _ := h.get("GET", p, nil); status != 200 || body != "monolith" {
			t.Errorf("GET %s: %d %q, want the monolith's 200", p, status, body)
		}
	}
	// A route that names an internal path itself serves it.
	if status, body, _ := h.get("GET", "/debug/vars", nil); status != 200 || body != "ops" {
		t.Fatalf("GET /debug/vars through its own route: %d %q", status, body)
	}
	// An empty list exposes them all.
	if err := h.f.Reload(mustParse(t, h.path, "facade: { internal_paths: [] }\n"+cfg)); err != nil {
		t.Fatal(err)
	}
	if status, body, _ := h.get("GET", "/metrics", nil); status != 200 || body != "monolith" {
		t.Fatalf("GET /metrics with internal_paths: []: %d %q", status, body)
	}
}

// TestTEHeader checks what becomes of the client's TE header: it is hop-by-hop and removed,
// except that "trailers" is passed on, as httputil.ReverseProxy does so that backends know
// trailers will reach the client.
func TestTEHeader(t *testing.T) {
	b := startBackend(t, "b")
	h := startFacade(t, fmt.Sprintf("backends:\n  b: { url: %s }\nroutes:\n  - match: { path: / }\n    to: b\n", b.URL()))
	for _, tt := range []struct{ sent, want string }{
		{"gzip", ""},
		{"trailers", "trailers"},
		{"gzip, trailers", "trailers"},
	} {
		h.get("GET", "/x", http.Header{"Te": {tt.sent}})
		if got := b.seen().header.Get("Te"); got != tt.want {
			t.Errorf("TE: %s reached the backend as %q, want %q", tt.sent, got, tt.want)
		}
	}
}

// TestFirstLoadIsCounted checks the config the facade starts with counts as a successful
// load in ficus_config_reloads_total.
func TestFirstLoadIsCounted(t *testing.T) {
	b := startBackend(t, "b")
	h := startFacade(t, fmt.Sprintf("backends:\n  b: { url: %s }\nroutes:\n  - match: { path: / }\n    to: b\n", b.URL()))
	if got := h.metric(`ficus_config_reloads_total{result="success"}`); got != 1 {
		t.Fatalf("ficus_config_reloads_total{result=\"success\"} = %v at start, want 1", got)
	}
}
