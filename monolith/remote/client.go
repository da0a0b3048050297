// Package remote holds the monolith's remote adapters: HTTP clients of the extracted
// services, written against the shop's contract (platform/contract), that serve the orders
// module's ports (orders.Stock, orders.Payments) when config.yaml sets
// monolith.modules.inventory or .payments to remote. They are the other half of the
// strangler's cut: the in-process adapters call the monolith's own modules, these call the
// service that replaced them.
//
// Every request goes through one chain of http.RoundTripper middlewares, outermost first:
// store.RefuseInTx (a call made inside a database write transaction fails at once, sending
// nothing), then platform/resilience's Bulkhead, Breaker (gobreaker v2), Retry (exponential
// backoff with full jitter, for idempotent requests only) and Timeout (per attempt), with
// the policy of the backend of the same name in config.yaml. Every command carries an
// Idempotency-Key derived from the order and the step (Key), which also makes it a request
// Retry may send again.
//
// Errors keep the contract's meaning: a problem answer becomes a fault.Error with the
// problem's code and detail (so the orders module answers its clients as it would in
// process), and a call that may have reached the service without its answer reaching the
// monolith (a timeout, a connection lost after the request was written) also matches
// orders.ErrOutcomeUnknown, which the order saga must treat as "perhaps done".
package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/fault"
	"github.com/ficus-project/ficus/platform/problem"
	"github.com/ficus-project/ficus/platform/resilience"
	"github.com/ficus-project/ficus/platform/store"
)

// maxAnswer bounds the body of an answer the client reads: the contract's largest answer (a
// page of 200 items) is far below it.
const maxAnswer = 1 << 20

// Options tune a Client. The zero value is ready to use; each field's comment gives its
// default.
type Options struct {
	// Transport sends the requests once the chain is done with them. Default: a transport
	// of the client's own (keep-alive, no environment proxy).
	Transport http.RoundTripper
	// Logger receives the breaker's state changes. Default: discarded.
	Logger *slog.Logger
	// OnRetry, if set, is called before each retry (for a metric).
	OnRetry func(backend string)
	// OnBreakerChange, if set, is called on every breaker state change.
	OnBreakerChange func(backend string, from, to gobreaker.State)
}

// Client is an HTTP client of one extracted service.
type Client struct {
	name    string
	base    *url.URL
	client  *http.Client
	breaker *resilience.Breaker
}

// NewClient returns a client of the service the backend b (named name in config.yaml)
// points at, with b's timeout, retry, breaker and bulkhead policy.
func NewClient(name string, b config.Backend, opts Options) (*Client, error) {
	u, err := url.Parse(b.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("remote %s: backend URL %q is not an http(s) URL", name, b.URL)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	transport := opts.Transport
	if transport == nil {
		transport = newTransport()
	}
	var rt http.RoundTripper = &resilience.Timeout{Next: transport, Timeout: b.Timeout.D()}
	rt = attempts{next: rt}
	retry := &resilience.Retry{
		Next:       rt,
		Attempts:   b.Retry.Attempts,
		Backoff:    b.Retry.Backoff.D(),
		MaxBackoff: b.Retry.MaxBackoff.D(),
		Budget:     resilience.NewBudget(resilience.BudgetSettings{Ratio: b.Retry.Budget}),
	}
	if opts.OnRetry != nil {
		retry.OnRetry = func() { opts.OnRetry(name) }
	}
	c := &Client{name: name, base: u}
	c.breaker = resilience.NewBreaker(retry, resilience.BreakerSettings{
		Name:                name,
		ConsecutiveFailures: b.Breaker.ConsecutiveFailures,
		OpenFor:             b.Breaker.OpenFor.D(),
		HalfOpenRequests:    b.Breaker.HalfOpenRequests,
		OnStateChange: func(name string, from, to gobreaker.State) {
			lvl := slog.LevelInfo
			if to == gobreaker.StateOpen {
				lvl = slog.LevelWarn
			}
			opts.Logger.Log(context.Background(), lvl, "remote adapter: circuit breaker state changed",
				"backend", name, "from", from.String(), "to", to.String())
			if opts.OnBreakerChange != nil {
				opts.OnBreakerChange(name, from, to)
			}
		},
	})
	rt = resilience.NewBulkhead(c.breaker, resilience.BulkheadSettings{
		MaxConcurrent: b.Bulkhead.MaxConcurrent,
		MaxQueue:      b.Bulkhead.MaxQueue,
		QueueTimeout:  b.Bulkhead.QueueTimeout.D(),
	})
	c.client = &http.Client{Transport: store.RefuseInTx(rt)}
	return c, nil
}

// Name returns the backend's name.
func (c *Client) Name() string { return c.name }

// BreakerState returns the state of the client's circuit breaker: closed, half-open or open.
func (c *Client) BreakerState() string { return c.breaker.State().String() }

// Close releases the client's idle connections.
func (c *Client) Close() { c.client.CloseIdleConnections() }

// newTransport is the default transport: keep-alive connections to one host, HTTP/1.1, no
// environment proxy (the services are on the monolith's network, not behind the user's
// proxy), bounded dials.
func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Key is the Idempotency-Key of a command: derived from the order and the step, so that a
// retry of the step — by the client's Retry, by the saga after a crash, or by a compensation
// asking what became of it — is recognised by the service as the same command.
func Key(orderID, step string) string { return "ficus-order-" + orderID + "-" + step }

// call sends one request and decodes a 2xx answer's JSON into out (when out is not nil). A
// problem answer is returned as a fault.Error; a failure that may have reached the service
// without its answer coming back also matches orders.ErrOutcomeUnknown.
func (c *Client) call(ctx context.Context, method, path, key string, in, out any) error {
	var body io.Reader
	var raw []byte
	if in != nil {
		var err error
		if raw, err = json.Marshal(in); err != nil {
			return fmt.Errorf("%s %s %s: encoding the request: %w", c.name, method, path, err)
		}
		body = bytes.NewReader(raw)
	}
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	tracker := &attemptLog{}
	req, err := http.NewRequestWithContext(context.WithValue(ctx, attemptKey{}, tracker), method, u.String(), body)
	if err != nil {
		return fmt.Errorf("%s %s %s: %w", c.name, method, path, err)
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }
	}
	req.Header.Set("Accept", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		err = fmt.Errorf("%s %s %s: %w", c.name, method, path, err)
		if tracker.uncertain {
			return errors.Join(err, orders.ErrOutcomeUnknown)
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	switch {
	case err != nil:
		// The status came, the body did not: the service did what the status says, but the
		// answer is lost.
		return errors.Join(fmt.Errorf("%s %s %s: reading the answer: %w", c.name, method, path, err), orders.ErrOutcomeUnknown)
	case len(data) > maxAnswer:
		return fmt.Errorf("%s %s %s: the answer is over %d bytes", c.name, method, path, maxAnswer)
	}
	if resp.StatusCode/100 == 2 {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s %s: decoding the %d answer: %w", c.name, method, path, resp.StatusCode, err)
		}
		return nil
	}
	err = answerError(c.name, method, path, resp, data)
	if tracker.uncertain {
		// An earlier attempt got no answer, so what this one says may not be the whole story
		// (the earlier one may still be applied by the service).
		return errors.Join(err, orders.ErrOutcomeUnknown)
	}
	return err
}

// statusKind maps an answer's status to the kind of domain error it stands for: the inverse
// of web.ToProblem.
var statusKind = map[int]fault.Kind{
	http.StatusBadRequest:          fault.Invalid,
	http.StatusNotFound:            fault.NotFound,
	http.StatusConflict:            fault.Conflict,
	http.StatusPaymentRequired:     fault.Declined,
	http.StatusUnprocessableEntity: fault.Unprocessable,
	http.StatusServiceUnavailable:  fault.Unavailable,
}

// answerError turns a non-2xx answer into an error: a problem document with a code becomes
// the fault.Error the service's domain raised, with its detail and fields; anything else (a
// proxy's 502, a 500) an error that says what came back.
func answerError(name, method, path string, resp *http.Response, data []byte) error {
	var p problem.Problem
	if strings.HasPrefix(resp.Header.Get("Content-Type"), problem.ContentType) && json.Unmarshal(data, &p) == nil && p.Code != "" {
		if kind, ok := statusKind[resp.StatusCode]; ok {
			e := &fault.Error{Kind: kind, Code: p.Code, Msg: p.Detail}
			if e.Msg == "" {
				e.Msg = p.Title
			}
			for _, f := range p.Errors {
				e.Fields = append(e.Fields, fault.Field{Name: f.Field, Msg: f.Message})
			}
			return fmt.Errorf("%s %s %s: %w", name, method, path, e)
		}
	}
	text := strings.TrimSpace(string(data))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	return fmt.Errorf("%s %s %s: %s: %s", name, method, path, resp.Status, text)
}

// attemptKey is the context key of a call's attemptLog.
type attemptKey struct{}

// attemptLog records what the attempts of one call tell about its outcome.
type attemptLog struct {
	// uncertain is set when an attempt may have reached the service and got no answer.
	uncertain bool
}

// attempts sits under Retry and over Timeout: it sees every attempt of a call and notes in
// the call's attemptLog the ones whose outcome is unknown. Retries are sequential, so the
// log needs no lock.
type attempts struct{ next http.RoundTripper }

func (a attempts) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if err != nil && mayHaveArrived(err) {
		if log, ok := req.Context().Value(attemptKey{}).(*attemptLog); ok {
			log.uncertain = true
		}
	}
	return resp, err
}

// mayHaveArrived reports whether a failed attempt may have reached the service: everything
// but a connection that was never made.
func mayHaveArrived(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	return true
}
