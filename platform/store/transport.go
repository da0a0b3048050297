package store

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrNetworkInTx is the error of an HTTP request made inside a unit of work.
var ErrNetworkInTx = errors.New("network call inside a database write transaction")

// RefuseInTx returns a RoundTripper that sends requests through next
// (http.DefaultTransport when nil), except those whose context carries an open unit of work
// (InTx), which it refuses with ErrNetworkInTx without sending anything. A call made inside a
// write transaction holds the transaction open for as long as the remote side takes: on
// SQLite every writer of the process waits for it, on PostgreSQL its row locks stay held, and
// a retried transaction would repeat the call. Make such calls before Write or after it
// returns. Every HTTP client that code running under a unit of work may reach (the monolith's
// remote adapters) should use it.
func RefuseInTx(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return refuseInTx{next: next}
}

type refuseInTx struct{ next http.RoundTripper }

func (t refuseInTx) RoundTrip(req *http.Request) (*http.Response, error) {
	if InTx(req.Context()) {
		if req.Body != nil {
			_ = req.Body.Close() // A RoundTripper closes the body, even when it fails.
		}
		return nil, fmt.Errorf("%w: %s %s://%s%s refused: make the call before the write transaction begins or after it commits",
			ErrNetworkInTx, req.Method, req.URL.Scheme, req.URL.Host, req.URL.Path)
	}
	return t.next.RoundTrip(req)
}
