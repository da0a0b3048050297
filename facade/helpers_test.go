package facade

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/config"
)

const testToken = "test-admin-token"

// testBackend is a real HTTP server on loopback that counts its hits and remembers the last
// request it saw. By default it answers 200 with its name as the body. The facade's health
// checks are answered 200 and counted apart, in probes, so hits counts what clients sent.
type testBackend struct {
	name    string
	srv     *httptest.Server
	hits    atomic.Int64
	probes  atomic.Int64
	handler atomic.Pointer[http.HandlerFunc]
	// probeStatus, when set, is the status health checks get; lastProbe is the last one's URI.
	probeStatus atomic.Int32
	lastProbe   atomic.Pointer[string]

	mu   sync.Mutex
	last seenRequest
}

type seenRequest struct {
	method string
	uri    string
	header http.Header
	body   string
}

func startBackend(t *testing.T, name string) *testBackend {
	t.Helper()
	b := &testBackend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") == "ficus-health-check" {
			b.probes.Add(1)
			uri := r.RequestURI
			b.lastProbe.Store(&uri)
			if st := b.probeStatus.Load(); st != 0 {
				w.WriteHeader(int(st))
			}
			return
		}
		b.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.last = seenRequest{method: r.Method, uri: r.RequestURI, header: r.Header.Clone(), body: string(body)}
		b.mu.Unlock()
		if h := b.handler.Load(); h != nil {
			(*h)(w, r)
			return
		}
		io.WriteString(w, b.name)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *testBackend) URL() string { return b.srv.URL }

func (b *testBackend) set(h http.HandlerFunc) { b.handler.Store(&h) }

// seenProbe returns the URI of the last health check the backend answered.
func (b *testBackend) seenProbe() string {
	if p := b.lastProbe.Load(); p != nil {
		return *p
	}
	return ""
}

func (b *testBackend) seen() seenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// deadURL returns the URL of a loopback port nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// harness is a facade serving on loopback, with its admin API, built from a config file.
type harness struct {
	t     *testing.T
	f     *Facade
	proxy *httptest.Server
	admin *httptest.Server
	path  string
	logs  *syncBuffer
}

func startFacade(t *testing.T, yaml string) *harness {
	t.Helper()
	return startFacadeWith(t, yaml, Options{})
}

// startFacadeWith is startFacade with opts; the harness sets the logger, the token variable
// and the debounce.
func startFacadeWith(t *testing.T, yaml string, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "config.yaml"), logs: &syncBuffer{}}
	if err := os.WriteFile(h.path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(h.path)
	if err != nil {
		t.Fatalf("loading test config: %v", err)
	}
	opts.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Getenv = func(k string) string { return map[string]string{"FICUS_ADMIN_TOKEN": testToken}[k] }
	opts.Debounce = 20 * time.Millisecond
	h.f, err = New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.proxy = httptest.NewServer(h.f.Handler())
	h.admin = httptest.NewServer(h.f.AdminHandler())
	t.Cleanup(func() {
		h.proxy.Close()
		h.admin.Close()
		h.f.Close()
		if t.Failed() {
			t.Logf("facade logs:\n%s", h.logs.String())
		}
	})
	return h
}

// watch runs the facade's config watcher for the rest of the test, and returns once it
// watches, so that the test's edits are seen.
func (h *harness) watch() {
	h.t.Helper()
	watchFacade(h.t, h.f, h.path)
}

// watchFacade runs f's config watcher on path until the test ends, and returns once it
// watches.
func watchFacade(t *testing.T, f *Facade, path string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	watching, done := make(chan struct{}), make(chan struct{})
	f.watching = func() { close(watching) }
	go func() {
		defer close(done)
		if err := f.Watch(ctx, path); err != nil {
			t.Errorf("watch: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-watching:
	case <-done:
		t.Fatal("the watcher stopped before it watched")
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher did not start watching within 5s")
	}
}

// writeConfig replaces the config file, atomically (temp file + rename) or in place.
func (h *harness) writeConfig(yaml string, inPlace bool) {
	h.t.Helper()
	if inPlace {
		if err := os.WriteFile(h.path, []byte(yaml), 0o644); err != nil {
			h.t.Fatal(err)
		}
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(h.path), ".config-*.tmp")
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := tmp.WriteString(yaml); err != nil {
		h.t.Fatal(err)
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), h.path); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) do(method, path string, header http.Header, body io.Reader) *http.Response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.proxy.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// get sends a request and returns status, body and headers.
func (h *harness) get(method, path string, header http.Header) (int, string, http.Header) {
	h.t.Helper()
	resp := h.do(method, path, header, nil)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// adminGet calls the admin API with the given token ("" for none).
func (h *harness) adminGet(path, token string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.admin.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the sample named exactly name (with its labels, as
// Prometheus writes them) on /metrics, or -1 if there is none.
func (h *harness) metric(name string) float64 {
	h.t.Helper()
	status, body := h.adminGet("/metrics", testToken)
	if status != 200 {
		h.t.Fatalf("/metrics: %d", status)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				h.t.Fatalf("metric %s: %v", name, err)
			}
			return v
		}
	}
	return -1
}

// eventually polls cond until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawRequest sends a request line exactly as given, so the path reaches the facade
// uncleaned by any client library, and returns the status code.
func rawRequest(t *testing.T, addr, method, target string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: facade.test\r\nConnection: close\r\n\r\n", method, target)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}
