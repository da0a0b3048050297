package shop_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficus-project/ficus/cmd/ficus/internal/shop"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/store/storetest"
)

// startShop starts a shop on databases of the engine under test, closed when t ends.
func startShop(t *testing.T, opts shop.Options) *shop.Shop {
	t.Helper()
	opts.Dir = t.TempDir()
	opts.Database = func(string) string { return storetest.DSN(t) }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := shop.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		if err := s.Err(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// answer is an HTTP exchange's outcome.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("not JSON (%d): %v: %s", a.status, err, a.body)
	}
	return v
}

var (
	validatorOnce sync.Once
	validator     *contract.Validator
	validatorErr  error
)

// send sends a request with a JSON body (when not empty) and header pairs, and checks the
// answer against the OpenAPI document.
func send(t *testing.T, method, url, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	validatorOnce.Do(func() { validator, validatorErr = contract.NewValidator() })
	if validatorErr != nil {
		t.Fatal(validatorErr)
	}
	if err := validator.CheckResponse(context.Background(), req, resp.StatusCode, resp.Header, b); err != nil {
		t.Errorf("%s %s: the answer breaks the contract: %v", method, url, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// mustSend is send that fails the test unless the status is want.
func mustSend(t *testing.T, want int, method, url, body string, header ...string) answer {
	t.Helper()
	a := send(t, method, url, body, header...)
	if a.status != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, url, a.status, want, a.body)
	}
	return a
}

// waitFor polls check until it reports true, failing the test after timeout with the last
// thing check said.
func waitFor(t *testing.T, what string, timeout time.Duration, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, timeout, last)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}
