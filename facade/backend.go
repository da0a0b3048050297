package facade

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/resilience"
	"github.com/sony/gobreaker/v2"
)

// Backend is one upstream and the resilience chain in front of it: bulkhead → health gate →
// breaker → retry → timeout → transport, with an active health check probing it. A Backend
// outlives reloads that leave its config unchanged, so its breaker, bulkhead, retry budget
// and health keep their state.
type Backend struct {
	// Name is the backend's name in config.yaml.
	Name string
	// Config is the backend's config; the Backend never changes it.
	Config config.Backend

	url      *url.URL
	rt       http.RoundTripper
	breaker  *resilience.Breaker
	bulkhead *resilience.Bulkhead
	health   *resilience.Health // nil when the health check is disabled

	stopHealth context.CancelFunc // set by start; guarded by the facade's reloadMu
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
				if b.health != nil {
					// Probe now: if the backend is down, the health check sees it and closes
					// the breaker the moment the backend is back.
					b.health.Poke()
				}
			}
			log.Log(context.Background(), lvl, "circuit breaker state changed", "backend", name, "from", from.String(), "to", to.String())
		},
	})
	rt = b.breaker
	if !c.Health.Disabled {
		probeURL := *u
		b.point(&probeURL, "/")
		probeURL.Path = strings.TrimSuffix(probeURL.Path, "/")
		hp, err := url.Parse(c.Health.Path)
		if err != nil {
			return nil, fmt.Errorf("parsing the health check path of backend %s: %w", name, err)
		}
		probeURL.Path += hp.Path
		probeURL.RawQuery = hp.RawQuery
		passed, failed := m.checks.WithLabelValues(name, "success"), m.checks.WithLabelValues(name, "failure")
		b.health = resilience.NewHealth(rt, resilience.HealthSettings{
			URL:                probeURL.String(),
			Transport:          transport,
			Interval:           c.Health.Interval.D(),
			Timeout:            c.Health.Timeout.D(),
			HealthyThreshold:   c.Health.HealthyThreshold,
			UnhealthyThreshold: c.Health.UnhealthyThreshold,
			OnProbe: func(err error) {
				if err != nil {
					failed.Inc()
				} else {
					passed.Inc()
				}
			},
			OnChange: func(healthy bool, err error) {
				if healthy {
					log.Info("backend is healthy again", "backend", name)
				} else {
					log.Warn("backend is unhealthy; its requests are refused until a health check passes",
						"backend", name, "failed_checks", c.Health.UnhealthyThreshold, "err", err)
				}
			},
			OnRecover: func() {
				// The breaker logs and counts its own change.
				b.breaker.Reset()
			},
		})
		rt = b.health
	}
	b.bulkhead = resilience.NewBulkhead(rt, resilience.BulkheadSettings{
		MaxConcurrent: c.Bulkhead.MaxConcurrent,
		MaxQueue:      c.Bulkhead.MaxQueue,
		QueueTimeout:  c.Bulkhead.QueueTimeout.D(),
		OnReject:      m.bulkheadFull.WithLabelValues(name).Inc,
	})
	b.rt = b.bulkhead
	return b, nil
}

// start runs the backend's health check until ctx is done or stop is called.
func (b *Backend) start(ctx context.Context, wg *sync.WaitGroup) {
	if b.health == nil || b.stopHealth != nil {
		return
	}
	ctx, b.stopHealth = context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.health.Run(ctx)
	}()
}

// stop stops the backend's health check.
func (b *Backend) stop() {
	if b.stopHealth != nil {
		b.stopHealth()
	}
}

// Health returns the state of the backend's health check: healthy, unhealthy, or disabled.
func (b *Backend) Health() string {
	switch {
	case b.health == nil:
		return "disabled"
	case b.health.Healthy():
		return "healthy"
	}
	return "unhealthy"
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
func (b *Backend) retryAfter() int { return seconds(b.breaker.OpenFor()) }

// healthRetryAfter is the Retry-After, in seconds, for a request refused because the
// backend is unhealthy: the next probe may find it back.
func (b *Backend) healthRetryAfter() int { return seconds(b.health.Interval()) }

// seconds rounds d up to whole seconds, at least one.
func seconds(d time.Duration) int {
	return max(int((d+time.Second-1)/time.Second), 1)
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
