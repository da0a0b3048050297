package facade

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/config"
)

// served is a facade run by Serve on loopback listeners, in front of one backend.
type served struct {
	f       *Facade
	backend *testBackend
	proxy   string
	admin   string
	logs    *syncBuffer
}

func serveFacade(t *testing.T) *served {
	t.Helper()
	s := &served{backend: startBackend(t, "monolith"), logs: &syncBuffer{}}
	cfg, err := config.Parse("config.yaml", []byte(fmt.Sprintf(
		"backends:\n  monolith: { url: %s, health: { disabled: true } }\nroutes:\n  - match: { path: / }\n    to: monolith\n", s.backend.URL())))
	if err != nil {
		t.Fatal(err)
	}
	if s.f, err = New(cfg, Options{AdminToken: testToken, Logger: newTestLogger(s.logs)}); err != nil {
		t.Fatal(err)
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.proxy, s.admin = pl.Addr().String(), al.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.f.Serve(ctx, pl, al) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("facade logs:\n%s", s.logs.String())
		}
	})
	return s
}

// readToClose writes raw on a new connection to addr and reads until the facade closes it;
// a connection still open after 5s fails the test.
func readToClose(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading until the facade closes the connection: %v (read %q)", err, got)
	}
	return string(got)
}

// TestFacadeRefusesSmuggling: each way of smuggling a request past a front proxy is answered
// 400 by the facade's listener and the connection closed, and the backend sees nothing.
func TestFacadeRefusesSmuggling(t *testing.T) {
	s := serveFacade(t)
	smuggled := "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
	cases := map[string]string{
		"CL.TE":            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
		"TE.CL":            "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n" + smuggled + "\r\n0\r\n\r\n",
		"duplicate CL":     "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n" + smuggled,
		"obs-fold":         "POST /a HTTP/1.1\r\nHost: x\r\nX-Pad: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
		"TE not chunked":   "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled,
		"TE over HTTP/1.0": "POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled,
		"bare LF":          "GET /a HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\n\r\n",
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			before := s.backend.hits.Load()
			got := readToClose(t, s.proxy, raw)
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
			if err != nil {
				t.Fatalf("reading the answer %q: %v", got, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 400 || !resp.Close || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("answer %d close=%v %v %s, want a 400 problem that closes the connection", resp.StatusCode, resp.Close, resp.Header, body)
			}
			if n := s.backend.hits.Load() - before; n != 0 {
				t.Errorf("the backend saw %d requests", n)
			}
		})
	}
	// The admin listener is guarded too.
	got := readToClose(t, s.admin, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx")
	if !strings.HasPrefix(got, "HTTP/1.1 400 ") {
		t.Errorf("admin listener: %q", got)
	}
	if !strings.Contains(s.logs.String(), "request refused before routing") {
		t.Errorf("refusals are not logged:\n%s", s.logs.String())
	}
	metrics := readToClose(t, s.admin, "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testToken+"\r\nConnection: close\r\n\r\n")
	if want := fmt.Sprintf(`ficus_facade_rejected_total{reason="bad_framing"} %d`, len(cases)); !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s", want)
	}
}

// TestFacadeGuardKeepsLegitimateTraffic: pipelined requests with bodies in both framings and
// an HTTP/1.0 request pass the guard to the backend whole.
func TestFacadeGuardKeepsLegitimateTraffic(t *testing.T) {
	s := serveFacade(t)
	s.backend.set(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.URL.Path, s.backend.seen().body)
	})
	raw := "POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /two HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"POST /three HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
	br := bufio.NewReader(strings.NewReader(readToClose(t, s.proxy, raw)))
	for _, want := range []string{"/one hello", "/two abc", "/three xyz"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer for %q: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("got %d %q, want %q", resp.StatusCode, body, want)
		}
	}
}
