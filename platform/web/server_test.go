package web

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

// startServer serves a strict-JSON echo handler with NewServer on a loopback port.
func startServer(t *testing.T, opts ServerOptions, after func(c echo.Context) error) string {
	t.Helper()
	e := New(nil, nil)
	e.POST("/things", func(c echo.Context) error {
		var v map[string]any
		if err := Bind(c, &v); err != nil {
			return err
		}
		if after != nil {
			return after(c)
		}
		return c.JSON(http.StatusCreated, v)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(e, opts)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// rawRequest writes head and then body on a fresh connection and returns the response.
func rawRequest(t *testing.T, addr, head, body string) (*http.Response, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A failing server fails the test in seconds, not at the package timeout.
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, head+body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, conn
}

func TestSlowBodyIs408(t *testing.T) {
	addr := startServer(t, ServerOptions{BodyTimeout: 200 * time.Millisecond}, nil)
	head := "POST /things HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
	start := time.Now()
	// One byte of a declared thousand, then nothing: the client is too slow.
	resp, conn := rawRequest(t, addr, head, "{")
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	if waited := time.Since(start); waited > 3*time.Second {
		t.Errorf("answered after %s, want about the 200ms body timeout", waited)
	}
	var p struct{ Code string }
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || p.Code != "body_timeout" {
		t.Errorf("problem code %q (%v), want body_timeout", p.Code, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("content type %q", ct)
	}
	// The server hangs up: the connection held an unread body.
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Errorf("the connection stayed open after a 408")
	}
}

func TestBodyInTimeIsServedAndHandlerMayRunOn(t *testing.T) {
	const bodyTimeout = 100 * time.Millisecond
	ctxErr := make(chan error, 1)
	addr := startServer(t, ServerOptions{BodyTimeout: bodyTimeout}, func(c echo.Context) error {
		// Work on past the body timeout once the body is in: the request's context must
		// not be cancelled by the deadline that bounded the body.
		select {
		case <-c.Request().Context().Done():
		case <-time.After(3 * bodyTimeout):
		}
		ctxErr <- c.Request().Context().Err()
		return c.NoContent(http.StatusNoContent)
	})
	body := `{"a":1}`
	head := fmt.Sprintf("POST /things HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	resp, _ := rawRequest(t, addr, head, body)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d, want 204", resp.StatusCode)
	}
	if err := <-ctxErr; err != nil {
		t.Errorf("the handler's context was cancelled after the body arrived: %v", err)
	}
}

func TestOversizeHeadersRefused(t *testing.T) {
	addr := startServer(t, ServerOptions{MaxHeaderBytes: 4 << 10}, nil)
	head := "POST /things HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\nContent-Length: 2\r\n\r\n"
	resp, _ := rawRequest(t, addr, head, "{}")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
}

func TestNewServerDefaults(t *testing.T) {
	srv := NewServer(http.NotFoundHandler(), ServerOptions{})
	if srv.ReadHeaderTimeout != 10*time.Second || srv.IdleTimeout != 2*time.Minute || srv.MaxHeaderBytes != 64<<10 {
		t.Errorf("defaults: header %s, idle %s, max header %d", srv.ReadHeaderTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
}
