package facade

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestResponsesFlushedAsTheyArrive checks that the facade passes on what the backend has
// sent without waiting for the rest: each piece of a body, and the headers of any response
// but a small one of known length (whose headers go out with its body, in one write).
func TestResponsesFlushedAsTheyArrive(t *testing.T) {
	b := startBackend(t, "slow")
	h := startFacade(t, fmt.Sprintf(`
backends:
  slow: { url: %s }
routes:
  - match: { path: / }
    to: slow
`, b.URL()))

	// release is closed by the test once it has seen what the backend sent so far; the
	// backend waits for it (at most 5s, so a failing test ends) before sending the rest.
	var release chan struct{}
	wait := func() {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
	}
	tests := []struct {
		name string
		// length is the Content-Length the backend declares; -1 for none (chunked).
		length int
		// headersFirst says the backend sends its headers alone, then waits.
		headersFirst bool
	}{
		{name: "small body, known length, sent in two pieces", length: 20},
		{name: "large body, known length, headers first", length: 1 << 20, headersFirst: true},
		{name: "unknown length, headers first", length: -1, headersFirst: true},
		{name: "unknown length, sent in two pieces", length: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release = make(chan struct{})
			body := strings.Repeat("x", max(tt.length, 20))
			b.set(func(w http.ResponseWriter, r *http.Request) {
				if tt.length >= 0 {
					w.Header().Set("Content-Length", strconv.Itoa(tt.length))
				}
				w.WriteHeader(http.StatusOK)
				first := body[:10]
				if tt.headersFirst {
					first = ""
				}
				io.WriteString(w, first)
				w.(http.Flusher).Flush()
				wait()
				io.WriteString(w, body[len(first):])
			})
			start := time.Now()
			resp := h.do("GET", "/x", nil, nil)
			defer resp.Body.Close()
			if !tt.headersFirst {
				buf := make([]byte, 10)
				if _, err := io.ReadFull(resp.Body, buf); err != nil {
					t.Fatal(err)
				}
			}
			if waited := time.Since(start); waited > 3*time.Second {
				t.Fatalf("what the backend sent first took %s to arrive: the facade held it", waited)
			}
			close(release)
			rest, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(rest); tt.headersFirst && got != len(body) || !tt.headersFirst && got != len(body)-10 {
				t.Fatalf("received %d more bytes", got)
			}
		})
	}
}
