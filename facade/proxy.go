package facade

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"

	"github.com/ficus-project/ficus/facade/resilience"
	"github.com/ficus-project/ficus/facade/route"
	"github.com/ficus-project/ficus/platform/problem"
)

// exchange is what the facade knows about one request while it is proxied.
type exchange struct {
	route  *Route
	path   string // the cleaned path it was routed on and is forwarded with
	id     string
	header string  // the response header naming the backend
	served *target // the backend answering: the primary, or the fallback
	status int
}

// serve routes one request and proxies it.
func (f *Facade) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t := f.table.Load()
	id := r.Header.Get(headerRequestID)
	if !validID(id) {
		id = f.ids.next()
	}
	p, err := route.Clean(r.URL)
	if err != nil {
		f.metrics.badPath.Inc()
		w.Header().Set(headerRequestID, id)
		problem.Write(w, r, problem.New(http.StatusBadRequest, "ambiguous_path",
			"the request path has encoded slashes, backslashes or hidden dot segments"))
		return
	}
	i := t.router.Match(r.Method, p, r.Header)
	if i < 0 {
		f.metrics.noRoute.Inc()
		w.Header().Set(headerRequestID, id)
		pr := problem.New(http.StatusNotFound, "no_route", "no route matches "+r.Method+" "+p)
		pr.Instance = p
		problem.Write(w, r, pr)
		return
	}
	rt := t.routes[i]
	ex := &exchange{route: rt, path: p, id: id, header: t.header, served: rt.primary}
	defer func() {
		ex.served.m.observe(ex.status, time.Since(start).Seconds())
	}()
	f.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), contextKey{}, ex)))
}

// rewrite aims the outbound request at the route's primary backend.
func (f *Facade) rewrite(pr *httputil.ProxyRequest) {
	ex := exchangeFrom(pr.In.Context())
	ex.route.primary.backend.point(pr.Out.URL, ex.path)
	pr.Out.Host = ""
	// ReverseProxy drops the client's X-Forwarded-For before Rewrite; put it back so
	// SetXForwarded appends the client's address to it rather than replacing it.
	if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
		pr.Out.Header["X-Forwarded-For"] = prior
	}
	pr.SetXForwarded()
	pr.Out.Header.Set(headerRequestID, ex.id)
}

// dispatcher is the proxy's transport: it sends a request through its primary backend's
// chain and, when that backend is unavailable and the request is safe, through the
// fallback's. It marks the response with the backend that answered and the request id.
type dispatcher struct{ f *Facade }

var _ http.RoundTripper = dispatcher{}

// RoundTrip sends req.
func (d dispatcher) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := exchangeFrom(req.Context())
	resp, err := ex.served.backend.rt.RoundTrip(req)
	if err != nil && ex.route.fallback != nil && canFallBack(req, err) {
		fb := ex.route.fallback
		d.f.log.Warn("primary unavailable; serving from the fallback", "route", ex.route.Name,
			"backend", ex.served.backend.Name, "fallback", fb.backend.Name, "request_id", ex.id, "err", err)
		fb.m.fallbacks.Inc()
		out := req.Clone(req.Context())
		fb.backend.point(out.URL, ex.path)
		ex.served = fb
		resp, err = fb.backend.rt.RoundTrip(out)
	}
	if err != nil {
		return nil, err
	}
	resp.Header.Set(ex.header, ex.served.backend.Name)
	resp.Header.Set(headerRequestID, ex.id)
	ex.status = resp.StatusCode
	return resp, nil
}

// canFallBack reports whether a request the primary could not serve may go to the
// fallback: it is safe, has no body to replay, its client is still there, and the primary's
// breaker is open or the primary could not be reached. Timeouts and full bulkheads do not
// fall back: the primary may be working on the request, or merely busy.
func canFallBack(req *http.Request, err error) bool {
	if !resilience.Safe(req.Method) || (req.Body != nil && req.Body != http.NoBody) || req.Context().Err() != nil {
		return false
	}
	if errors.Is(err, resilience.ErrCircuitOpen) {
		return true
	}
	return !errors.Is(err, resilience.ErrTimeout) && !errors.Is(err, resilience.ErrBulkheadFull) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// proxyError answers a request the backends could not: the one place backend failures
// become problem responses.
func (f *Facade) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	ex := exchangeFrom(req.Context())
	if ex == nil {
		problem.Write(w, req, problem.New(http.StatusBadGateway, "backend_unreachable", "the request could not be proxied"))
		return
	}
	b := ex.served.backend
	h := w.Header()
	h.Set(headerRequestID, ex.id)
	h.Set(ex.header, b.Name)
	kind := errUnreachable
	var p *problem.Problem
	switch {
	case req.Context().Err() != nil:
		kind = errClientClosed
	case errors.Is(err, resilience.ErrCircuitOpen):
		kind = errCircuitOpen
		p = problem.New(http.StatusServiceUnavailable, codes[kind], "backend "+b.Name+" is failing; its circuit breaker is open")
		p.RetryAfter = b.retryAfter()
	case errors.Is(err, resilience.ErrBulkheadFull):
		kind = errBulkheadFull
		p = problem.New(http.StatusServiceUnavailable, codes[kind], "backend "+b.Name+" is at its concurrency limit")
		p.RetryAfter = 1
	case errors.Is(err, resilience.ErrTimeout):
		kind = errTimeout
		p = problem.New(http.StatusGatewayTimeout, codes[kind], "backend "+b.Name+" did not answer within "+b.Config.Timeout.String())
	default:
		p = problem.New(http.StatusBadGateway, codes[kind], "backend "+b.Name+" could not be reached")
	}
	ex.served.m.errors[kind].Inc()
	if p == nil {
		// The client is gone; nobody reads this. 499 is what the logs and metrics show.
		ex.status = 499
		w.WriteHeader(ex.status)
		return
	}
	ex.status = p.Status
	p.Instance = ex.path
	f.log.Warn("backend request failed", "route", ex.route.Name, "backend", b.Name, "code", p.Code,
		"request_id", ex.id, "err", err)
	problem.Write(w, req, p)
}

// bufferPool lends the proxy its 32 KiB copy buffers, so streaming a body allocates none.
type bufferPool struct{ p sync.Pool }

var _ httputil.BufferPool = (*bufferPool)(nil)

// Get returns a buffer.
func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

// Put returns a buffer to the pool.
func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
