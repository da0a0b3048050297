package facade

import (
	"strings"
	"testing"
	"time"
)

// TestServersAreBounded: the facade's two servers bound header size and time and idle
// connections, and the admin API (which reads no bodies) the whole request. The proxy's
// bodies are bounded per request by facade.max_body_bytes and facade.body_timeout
// (TestTooLargeBodyIs413 and TestSlowUploadsHoldNothingForLong in client_test.go).
func TestServersAreBounded(t *testing.T) {
	s := serveFacade(t)
	proxy, admin := s.f.servers()
	for name, srv := range map[string]struct {
		header, idle, read time.Duration
		maxHeader          int
	}{
		"proxy": {proxy.ReadHeaderTimeout, proxy.IdleTimeout, proxy.ReadTimeout, proxy.MaxHeaderBytes},
		"admin": {admin.ReadHeaderTimeout, admin.IdleTimeout, admin.ReadTimeout, admin.MaxHeaderBytes},
	} {
		if srv.header <= 0 || srv.header > 30*time.Second || srv.idle <= 0 || srv.idle > 5*time.Minute ||
			srv.maxHeader <= 0 || srv.maxHeader > 1<<20 {
			t.Errorf("%s server unbounded: %+v", name, srv)
		}
		if name == "admin" && (srv.read <= 0 || srv.read > time.Minute) {
			t.Errorf("admin server has no read timeout: %+v", srv)
		}
	}
	// And they are the servers Serve runs: a head over MaxHeaderBytes is refused on both.
	big := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", MaxHeaderBytes+8<<10) + "\r\n\r\n"
	for _, addr := range []string{s.proxy, s.admin} {
		if got := readToClose(t, addr, big); !strings.HasPrefix(got, "HTTP/1.1 431 ") {
			t.Errorf("%s: a %d-byte head got %.40q, want 431", addr, len(big), got)
		}
	}
	if s.backend.hits.Load() != 0 {
		t.Errorf("the backend saw %d requests", s.backend.hits.Load())
	}
}
