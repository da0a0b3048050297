package facade

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ficus-project/ficus/facade/resilience"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/sony/gobreaker/v2"
)

// Backend is one upstream and the resilience chain in front of it: bulkhead → breaker →
// retry → timeout → transport. A Backend outlives reloads that leave its config unchanged,
// so its breaker, bulkhead and retry budget keep their state.
type Backend struct {
	// Name is the backend's name in config.yaml.
	Name string
	// Config is the backend's config; the Backend never changes it.
	Config config.Backend

	url      *url.URL
	rt       http.RoundTripper
	breaker  *resilience.Breaker
	bulkhead *resilience.Bulkhead
}

func newBackend(name string, c config.Backend, transport http.RoundTripper, m *metrics, log *slog.Logger) (*Backend, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing the URL of backend %s: %w", name, err)
	}
	b := &Backend{Name: name, Config: c, url: u}
	var rt http.RoundTripper = &resilience.Timeout{Next: transport, Timeout: c.Timeout.D()}
	rt = &resilience.Retry{
		Next:              rt,
		Attempts:          c.Retry.Attempts,
		Backoff:           c.Retry.Backoff.D(),
		MaxBackoff:        c.Retry.MaxBackoff.D(),
		Budget:            resilience.NewBudget(resilience.BudgetSettings{Ratio: c.Retry.Budget}),
		OnRetry:           m.retries.WithLabelValues(name).Inc,
		OnBudgetExhausted: m.exhausted.WithLabelValues(name).Inc,
	}
	b.breaker = resilience.NewBreaker(rt, resilience.BreakerSettings{
		Name:                name,
		ConsecutiveFailures: c.Breaker.ConsecutiveFailures,
		OpenFor:             c.Breaker.OpenFor.D(),
		HalfOpenRequests:    c.Breaker.HalfOpenRequests,
		OnStateChange: func(name string, from, to gobreaker.State) {
			m.transitions.WithLabelValues(name, to.String()).Inc()
			lvl := slog.LevelInfo
			if to == gobreaker.StateOpen {
				lvl = slog.LevelWarn
			}
			log.Log(context.Background(), lvl, "circuit breaker state changed", "backend", name, "from", from.String(), "to", to.String())
		},
	})
	b.bulkhead = resilience.NewBulkhead(b.breaker, resilience.BulkheadSettings{
		MaxConcurrent: c.Bulkhead.MaxConcurrent,
		MaxQueue:      c.Bulkhead.MaxQueue,
		QueueTimeout:  c.Bulkhead.QueueTimeout.D(),
		OnReject:      m.bulkheadFull.WithLabelValues(name).Inc,
	})
	b.rt = b.bulkhead
	return b, nil
}

// point aims u, an outbound request's URL, at this backend with the cleaned inbound path
// appended to the backend's own base path. The query is kept as it came.
func (b *Backend) point(u *url.URL, cleanPath string) {
	u.Scheme = b.url.Scheme
	u.Host = b.url.Host
	if base := b.url.Path; base != "" && base != "/" {
		u.Path = strings.TrimSuffix(base, "/") + cleanPath
	} else {
		u.Path = cleanPath
	}
	// Re-encode from the cleaned path: the backend must see the path the route was chosen
	// for, never the client's original encoding of it.
	u.RawPath = ""
}

// BreakerState returns the backend's circuit breaker state: closed, half-open or open.
func (b *Backend) BreakerState() string { return b.breaker.State().String() }

// retryAfter is the Retry-After, in seconds, for a request the open breaker refused.
func (b *Backend) retryAfter() int {
	s := int((b.breaker.OpenFor() + time.Second - 1) / time.Second)
	return max(s, 1)
}

// NewTransport returns the http.Transport the facade uses by default: keep-alive
// connections, many idle ones per backend (the facade sends everything to few hosts),
// HTTP/1.1, no transparent compression (bodies pass through as they are), and no
// environment proxy.
func NewTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}
