package facade

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/config"
)

func adminConfig(a, b *testBackend) string {
	return fmt.Sprintf(`
backends:
  a: { url: %s }
  b: { url: "%s" }
routes:
  - name: inventory
    match: { path: /api/inventory, methods: [GET], headers: { X-Tenant: t1 } }
    to: a
    fallback: b
    shadow: { to: b, sample: 0.5, methods: [GET], ignore: [/updated_at], headers: [Content-Type],
              equivalent: [{ class: rfc3339 }, { at: /note, regexp: '^v1-' }], capture: [{ at: /id }, { class: uuid }, { regexp: 'ord_[0-9a-z]+' }], learn: 0.1 }
  - match: { path: / }
    to: b
    canary: { to: a, percent: 10, sticky: header:X-Customer-ID }
    promote: { steps: [10, 50], sticky: header:X-Customer-ID, gates: { max_p99: 1s } }
monolith:
  database: postgres://app:s3cret@db.internal/shop
`, a.URL(), b.URL())
}

func TestAdminNeedsToken(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	h := startFacade(t, adminConfig(a, b))
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, _ := h.adminGet(path, ""); status != 200 {
			t.Errorf("%s without a token: %d, want 200", path, status)
		}
	}
	// Near misses too: a prefix of the token, the token plus a character, another case.
	nearMisses := []string{"", "wrong", testToken[:len(testToken)-1], testToken[:1], testToken + "x", testToken + " x",
		strings.ToUpper(testToken), "Bearer " + testToken}
	// "/" is the dashboard's page, open to all (TestDashboardPageIsOpenItsDataIsNot).
	for _, path := range []string{"/api/routes", "/api/backends", "/api/config", "/api/reload", "/api/dashboard", "/metrics", "/nope", "/healthz/x"} {
		for _, tok := range nearMisses {
			if status, body := h.adminGet(path, tok); status != 401 || !strings.Contains(body, `"unauthorized"`) {
				t.Errorf("%s with token %q: %d %s, want 401 problem", path, tok, status, body)
			}
		}
	}
	for _, path := range []string{"/api/routes", "/api/backends", "/api/config", "/api/reload", "/api/dashboard", "/metrics"} {
		if status, _ := h.adminGet(path, testToken); status != 200 {
			t.Errorf("%s with the token: %d, want 200", path, status)
		}
	}
	if status, _ := h.adminGet("/nope", testToken); status != 404 {
		t.Errorf("unknown endpoint with the token: %d, want 404", status)
	}
	h.f.Drain()
	if status, _ := h.adminGet("/readyz", ""); status != 503 {
		t.Errorf("/readyz while draining: %d, want 503", status)
	}
}

// TestAdminTokenIsNeverLogged checks where the admin token comes from, that the log says
// where and never what, and that without any token the admin API is closed to everyone.
func TestAdminTokenIsNeverLogged(t *testing.T) {
	a := startBackend(t, "a")
	cfg, err := config.Parse("config.yaml", []byte(fmt.Sprintf("backends:\n  a: { url: %s }\nroutes:\n  - match: { path: / }\n    to: a\n", a.URL())))
	if err != nil {
		t.Fatal(err)
	}
	const given = "token-from-options-0123456789abcdef"
	tests := []struct {
		name       string
		opts       Options
		wantToken  string
		wantSource string
	}{
		{"options", Options{AdminToken: given, AdminTokenSource: "/run/ficus/admin.token"}, given, "source=/run/ficus/admin.token"},
		{"options without source", Options{AdminToken: given}, given, "source=Options.AdminToken"},
		{"variable", Options{Getenv: func(k string) string { return map[string]string{"FICUS_ADMIN_TOKEN": given}[k] }}, given, "source=$FICUS_ADMIN_TOKEN"},
		{"none", Options{}, "", "no admin token given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &syncBuffer{}
			tt.opts.Logger = newTestLogger(logs)
			f, err := New(cfg, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(f.Close)
			if !strings.Contains(logs.String(), tt.wantSource) {
				t.Errorf("the log does not say where the token came from (%q):\n%s", tt.wantSource, logs.String())
			}
			if strings.Contains(logs.String(), f.token) || strings.Contains(logs.String(), given) {
				t.Fatalf("the admin token was logged:\n%s", logs.String())
			}
			srv := newServer(t, f.AdminHandler())
			if tt.wantToken != "" {
				if _, err := FetchRoutes(context.Background(), http.DefaultClient, srv, tt.wantToken); err != nil {
					t.Fatalf("with the token: %v", err)
				}
				return
			}
			if len(f.token) < 32 {
				t.Fatalf("the made-up token is weak: %d characters", len(f.token))
			}
			for _, tok := range []string{"", " ", "Bearer"} {
				req, _ := http.NewRequest("GET", srv+"/api/routes", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 401 {
					t.Fatalf("token %q: %d; the admin API must never be open", tok, resp.StatusCode)
				}
			}
		})
	}
}

func TestAdminEndpoints(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	h := startFacade(t, adminConfig(a, b))
	h.get("GET", "/other", nil)

	_, body := h.adminGet("/api/routes", testToken)
	var rt RouteTable
	if err := json.Unmarshal([]byte(body), &rt); err != nil {
		t.Fatal(err)
	}
	if rt.Generation != 1 || len(rt.Routes) != 2 {
		t.Fatalf("routes: %s", body)
	}
	r0 := rt.Routes[0]
	if r0.Name != "inventory" || r0.To != "a" || r0.Fallback != "b" || r0.Shadow == nil || *r0.Shadow.Sample != 0.5 ||
		r0.Match.Headers["X-Tenant"] != "t1" || r0.Breakers["a"] != "closed" || r0.Breakers["b"] != "closed" {
		t.Fatalf("route 0: %+v", r0)
	}
	if c := rt.Routes[1].Canary; c == nil || c.To != "a" || c.Percent != 10 {
		t.Fatalf("route 1 canary: %+v", c)
	}

	_, body = h.adminGet("/api/backends", testToken)
	var bs []BackendInfo
	if err := json.Unmarshal([]byte(body), &bs); err != nil || len(bs) != 2 || bs[0].Name != "a" || bs[0].URL != a.URL() || bs[0].Breaker != "closed" {
		t.Fatalf("backends: %s (%v)", body, err)
	}

	_, body = h.adminGet("/api/config", testToken)
	if strings.Contains(body, "s3cret") || !strings.Contains(body, `"backend_header": "Ficus-Backend"`) {
		t.Fatalf("config not redacted or not effective: %s", body)
	}

	_, body = h.adminGet("/api/reload", testToken)
	var res ReloadResult
	if err := json.Unmarshal([]byte(body), &res); err != nil || !res.OK || res.Generation != 1 || res.Path != h.path {
		t.Fatalf("reload: %s", body)
	}

	// The request is counted when the proxy's handler returns, which may be just after the
	// client has read the whole answer.
	eventually(t, "the request is counted", func() bool {
		return h.metric(`ficus_facade_requests_total{backend="b",code="2xx",route="/"}`) == 1 &&
			h.metric(`ficus_facade_request_duration_seconds_count{backend="b",route="/"}`) == 1
	})
	if got := h.metric(`ficus_config_last_reload_success`); got != 1 {
		t.Fatalf("last reload metric = %v", got)
	}
	if got := h.metric(`ficus_config_generation`); got != 1 {
		t.Fatalf("generation metric = %v", got)
	}

	var out bytes.Buffer
	if err := WriteRoutes(&out, rt); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ROUTE") {
		t.Fatalf("table:\n%s", out.String())
	}
	col := strings.Index(lines[0], "BACKEND")
	if !strings.HasPrefix(lines[1][col:], "a ") || !strings.HasPrefix(lines[2][col:], "b ") {
		t.Fatalf("columns not aligned:\n%s", out.String())
	}
	if !strings.Contains(lines[1], "X-Tenant=t1") || !strings.Contains(lines[1], "a:closed b:closed") || !strings.Contains(lines[2], "a 10%") ||
		!strings.Contains(lines[0], "STAGE") || !strings.Contains(lines[1], " shadow ") || !strings.Contains(lines[1], "0.00%") || !strings.Contains(lines[2], " canary ") {
		t.Fatalf("table:\n%s", out.String())
	}
}

// TestServeDrainsInFlight runs Serve on :0 listeners and stops it while a request is in
// flight: while the request drains, the admin API still answers and /readyz says 503, the
// request completes, and Serve returns.
func TestServeDrainsInFlight(t *testing.T) {
	b := startBackend(t, "slow")
	release := make(chan struct{})
	b.set(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		w.Write([]byte("finished"))
	})
	cfg, err := config.Parse("config.yaml", []byte(fmt.Sprintf("backends:\n  slow: { url: %s }\nroutes:\n  - match: { path: / }\n    to: slow\n", b.URL())))
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(cfg, Options{AdminToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	al, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- f.Serve(ctx, pl, al) }()

	readyz := func() int {
		resp, err := http.Get("http://" + al.Addr().String() + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := readyz(); status != 200 {
		t.Fatalf("readyz before shutdown: %d", status)
	}
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + pl.Addr().String() + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		got <- buf.String()
	}()
	eventually(t, "the request reaches the backend", func() bool { return b.hits.Load() == 1 })
	cancel()
	// Draining: the proxy waits for its request, and the admin API says so.
	eventually(t, "/readyz answers 503 while draining", func() bool { return readyz() == 503 })
	close(release)
	if s := <-got; s != "finished" {
		t.Fatalf("in-flight request: %q", s)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := http.Get("http://" + pl.Addr().String() + "/"); err == nil {
		t.Fatal("still serving after shutdown")
	}
	if status := readyz(); status != 0 {
		t.Fatalf("admin still answering after shutdown: %d", status)
	}
}

// TestServeRefusesRemoteAdmin checks the admin API is not served where other hosts can
// reach it unless facade.admin.allow_remote says so.
func TestServeRefusesRemoteAdmin(t *testing.T) {
	cfg, err := config.Parse("config.yaml", []byte("backends: { m: { url: http://127.0.0.1:1, health: { disabled: true } } }\nroutes: [{ match: { path: / }, to: m }]\n"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(cfg, Options{AdminToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	al, err := net.Listen("tcp", ":0") // every interface
	if err != nil {
		t.Fatal(err)
	}
	err = f.Serve(context.Background(), pl, al)
	if err == nil || !strings.Contains(err.Error(), "allow_remote") {
		t.Fatalf("Serve with the admin API on %s: %v, want a refusal naming allow_remote", al.Addr(), err)
	}
	if _, err := net.Dial("tcp", pl.Addr().String()); err == nil {
		t.Fatal("the proxy listener was left open")
	}
	if err := checkAdminAddr(al.Addr(), true); err != nil {
		t.Fatalf("allowed remote admin refused: %v", err)
	}
}

func TestAdminRedactsBackendPasswords(t *testing.T) {
	cfg, err := config.Parse("c.yaml", []byte("backends: { m: { url: 'http://ops:s3cret@127.0.0.1:1' } }\nroutes: [{ match: { path: / }, to: m }]\n"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(cfg, Options{AdminToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, b := range f.Backends() {
		if strings.Contains(b.URL, "s3cret") {
			t.Errorf("/api/backends shows a password: %s", b.URL)
		}
	}
}
