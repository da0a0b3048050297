package guard

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// server is an http.Server on a guarded loopback listener whose handler counts the requests
// it sees and answers with the size and SHA-256 of the body it read.
type server struct {
	addr    string
	hits    atomic.Int64
	mu      sync.Mutex
	refused []string
}

func startServer(t *testing.T, h http.Handler) *server {
	t.Helper()
	s := &server{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sum := sha256.New()
			n, err := io.Copy(sum, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "%s %d %s", r.URL.Path, n, hex.EncodeToString(sum.Sum(nil)))
		})
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 5 * time.Second}
	gl := NewListener(ln, Options{MaxHeaderBytes: 8 << 10, Rejected: func(_ net.Addr, status int, reason string) {
		s.mu.Lock()
		s.refused = append(s.refused, fmt.Sprintf("%d %s", status, reason))
		s.mu.Unlock()
	}})
	go srv.Serve(gl)
	t.Cleanup(func() { srv.Close() })
	s.addr = ln.Addr().String()
	return s
}

// exchange writes raw to a new connection and reads until the server closes it (failing
// the test if it does not within a few seconds).
func (s *server) exchange(t *testing.T, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", s.addr)
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
		t.Fatalf("reading to EOF (the connection must be closed): %v; read %q", err, got)
	}
	return string(got)
}

const okHead = "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"

func TestSmugglingIsRefused(t *testing.T) {
	cases := map[string]string{
		"CL and TE":           "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
		"TE and CL":           "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
		"two equal CLs":       "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"conflicting CLs":     "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ncontent-length: 30\r\n\r\nabc",
		"CL list":             "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
		"signed CL":           "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
		"obs-fold":            "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
		"obs-fold tab":        "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n",
		"folded TE":           "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
		"TE identity":         "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
		"TE list":             "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"TE xchunked":         "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
		"two TEs":             "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"TE on HTTP/1.0":      "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"space before colon":  "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
		"bare LF":             "GET / HTTP/1.1\nHost: x\n\n",
		"bare LF in a header": "GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
		"bare CR":             "GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n",
		// Smuggling on a kept-alive connection: the first request is served, the second
		// refused, and nothing after it is read.
		"second of two":        okHead + "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + okHead,
		"after a chunked body": "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n" + "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n" + okHead,
		"after a fixed body":   "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n" + okHead,
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, nil)
			got := s.exchange(t, raw)
			served := strings.Count(got, "HTTP/1.1 200 OK")
			wantServed := int64(0)
			if strings.HasPrefix(raw, okHead) || strings.HasPrefix(raw, "POST /a") {
				wantServed = 1
			}
			if int64(served) != wantServed || s.hits.Load() != wantServed {
				t.Errorf("served %d (handler saw %d), want %d: %q", served, s.hits.Load(), wantServed, got)
			}
			i := strings.Index(got, "HTTP/1.1 400 Bad Request\r\n")
			if i < 0 {
				t.Fatalf("no 400 answer: %q", got)
			}
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got[i:])), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if !resp.Close || resp.Header.Get("Content-Type") != "application/problem+json" || !bytes.Contains(body, []byte(`"status":400`)) {
				t.Errorf("answer: close=%v %v %s", resp.Close, resp.Header, body)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.refused) != 1 {
				t.Errorf("Rejected was told %q, want one refusal", s.refused)
			}
		})
	}
}

func TestTooLongHeadIs431(t *testing.T) {
	s := startServer(t, nil)
	got := s.exchange(t, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 16<<10)+"\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 431 ") || s.hits.Load() != 0 {
		t.Errorf("got %q, handler saw %d", got, s.hits.Load())
	}
}

// TestLegitimateTrafficPasses: keep-alive, pipelining, both framings with trailers, HTTP/1.0
// and chunk extensions all reach the handler with their bodies whole.
func TestLegitimateTrafficPasses(t *testing.T) {
	s := startServer(t, nil)
	sum := func(b string) string { h := sha256.Sum256([]byte(b)); return hex.EncodeToString(h[:]) }
	reqs := []struct{ raw, want string }{
		{"POST /fixed HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "/fixed 5 " + sum("hello")},
		{"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n5;ext=1\r\nhello\r\n6 \r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", "/chunked 11 " + sum("hello world")},
		{"GET /nobody HTTP/1.1\r\nHost: x\r\nUser-Agent:   spaced  \r\n\r\n", "/nobody 0 " + sum("")},
		{"POST /crlf-in-body HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", "/crlf-in-body 35 " + sum("GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"POST /ten HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", "/ten 3 " + sum("abc")},
	}
	var all strings.Builder
	for _, r := range reqs {
		all.WriteString(r.raw)
	}
	// Pipelined: all in one write; HTTP/1.0 last, so the server closes after it.
	got := s.exchange(t, all.String())
	br := bufio.NewReader(strings.NewReader(got))
	for _, r := range reqs {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the answer to %q: %v (all: %q)", r.raw, err, got)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != r.want {
			t.Errorf("%q: %d %q, want %q", r.raw, resp.StatusCode, body, r.want)
		}
	}
	if s.hits.Load() != int64(len(reqs)) {
		t.Errorf("handler saw %d requests, want %d", s.hits.Load(), len(reqs))
	}
	// One byte at a time: heads and chunk lines split everywhere.
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		for i := range len(all.String()) {
			if _, err := c.Write([]byte{all.String()[i]}); err != nil {
				return
			}
		}
	}()
	br = bufio.NewReader(c)
	for _, r := range reqs {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("byte by byte, reading the answer to %q: %v", r.raw, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != r.want {
			t.Errorf("byte by byte %q: %q, want %q", r.raw, body, r.want)
		}
	}
}

// TestLargeBodiesAndStreaming: a client's large bodies, in both framings, and a streamed
// answer pass whole, over one kept-alive connection.
func TestLargeBodiesAndStreaming(t *testing.T) {
	step := make(chan struct{})
	s := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			select {
			case <-step:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "second\n")
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}, Timeout: 20 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	for _, chunked := range []bool{false, true} {
		var body io.Reader = bytes.NewReader(big)
		if chunked {
			body = io.MultiReader(bytes.NewReader(big)) // no length known: sent chunked
		}
		resp, err := client.Post("http://"+s.addr+"/big", "application/octet-stream", body)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != fmt.Sprint(len(big)) {
			t.Errorf("chunked=%v: server read %s bytes, want %d", chunked, got, len(big))
		}
	}
	resp, err := client.Get("http://" + s.addr + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first streamed line: %q, %v", line, err)
	}
	close(step) // the second part is written only once the first has arrived
	if line, err := br.ReadString('\n'); err != nil || line != "second\n" {
		t.Fatalf("second streamed line: %q, %v", line, err)
	}
}

// TestUpgradedConnectionIsATunnel: after a 101, bytes that are no HTTP head pass untouched.
func TestUpgradedConnectionIsATunnel(t *testing.T) {
	s := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo: " + line)
		brw.Flush()
	}))
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(c, " folded\tand\rbare\n") // refused as a head, fine in a tunnel
	if line, err := br.ReadString('\n'); err != nil || line != "echo:  folded\tand\rbare\n" {
		t.Fatalf("echo: %q, %v", line, err)
	}
}
