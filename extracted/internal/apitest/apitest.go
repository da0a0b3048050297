// Package apitest drives an extracted service's HTTP API in its tests, the way clients reach
// it: over loopback, through the server every Ficus component runs (web.NewServer), with
// every answer checked against the shop's OpenAPI document.
package apitest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/web"
)

var validator = sync.OnceValues(contract.NewValidator)

// Client sends requests to one service and checks its answers against the contract.
type Client struct {
	t testing.TB
	// URL is the service's base URL, http://127.0.0.1:PORT.
	URL string
	v   *contract.Validator

	mu sync.Mutex
	// served counts the documented operations that answered 2xx, by "METHOD /path".
	served map[string]int
}

// Serve serves h on a loopback port until the test ends and returns a client of it.
func Serve(t testing.TB, h http.Handler) *Client {
	t.Helper()
	v, err := validator()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := web.NewServer(h, web.ServerOptions{})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &Client{t: t, URL: "http://" + ln.Addr().String(), v: v, served: map[string]int{}}
}

// Response is one exchange's outcome.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body as a JSON object, failing the test if it is not one.
func (r Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return v
}

// Do sends a request (a JSON body when body is not empty; header holds name, value pairs,
// and a Content-Type there replaces the JSON one, "" removing it) and checks the answer
// against the OpenAPI document: an answer that breaks it fails the test.
func (c *Client) Do(method, path, body string, header ...string) Response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.URL+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.v.CheckResponse(context.Background(), req, resp.StatusCode, resp.Header, b); err != nil {
		c.t.Errorf("%s %s: the answer breaks the contract: %v", method, path, err)
	}
	if op, err := c.v.Operation(req); err == nil && resp.StatusCode < 300 {
		c.mu.Lock()
		c.served[op]++
		c.mu.Unlock()
	}
	return Response{resp.StatusCode, resp.Header, b}
}

// MustDo is Do that expects a status and a JSON object.
func (c *Client) MustDo(want int, method, path, body string, header ...string) map[string]any {
	c.t.Helper()
	r := c.Do(method, path, body, header...)
	if r.Status != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r.JSON(c.t)
}

// Unserved returns the documented operations whose path starts with prefix that never
// answered 2xx to this client: what a test meant to reach every operation has missed.
func (c *Client) Unserved(prefix string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var missed []string
	for _, op := range c.v.Operations() {
		_, path, _ := strings.Cut(op, " ")
		if strings.HasPrefix(path, prefix) && c.served[op] == 0 {
			missed = append(missed, op)
		}
	}
	return missed
}

// Problem checks that r is a problem document with status and code, naming field among its
// errors when field is not empty.
func Problem(t testing.TB, r Response, status int, code, field string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("content type %q, want application/problem+json", ct)
	}
	p := r.JSON(t)
	if p["code"] != code {
		t.Errorf("code %v, want %s: %s", p["code"], code, r.Body)
	}
	if field == "" {
		return
	}
	errs, _ := p["errors"].([]any)
	for _, e := range errs {
		if m, ok := e.(map[string]any); ok && m["field"] == field {
			return
		}
	}
	t.Errorf("no error on field %q: %s", field, r.Body)
}
