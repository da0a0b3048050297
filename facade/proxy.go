package facade

import (
	"cmp"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ficus-project/ficus/facade/route"
	"github.com/ficus-project/ficus/platform/dryrun"
	"github.com/ficus-project/ficus/platform/problem"
	"github.com/ficus-project/ficus/platform/resilience"
)

// exchange is what the facade knows about one request while it is proxied. It is also the
// request's context, the client's context plus itself under contextKey, so carrying it
// costs no allocation of its own; and it holds the few values the proxy adds to headers.
type exchange struct {
	context.Context // the client request's

	route    *Route
	path     string     // the cleaned path it was routed on and is forwarded with
	body     clientBody // the request body, when it has one
	id       string
	header   string  // the response header naming the backend
	override string  // the header that overrides a canary route's backend
	chosen   *target // the backend the request was meant for: the primary, or the canary
	served   *target // the backend answering: the chosen one, or the fallback
	status   int
	// forced says a tester chose the backend with the override header: the request is
	// left out of the canary's figures.
	forced bool
	// canaryFailed says the canary failed the request, whoever answered it in the end.
	canaryFailed bool
	// clientFault says the request failed through its client's fault.
	clientFault bool
	// sample is the request's copy on the shadow path, or nil.
	sample *sample
	// w is the client's ResponseWriter as the proxy sees it.
	w flushWriter
	// vals backs the header values the facade sets, one array for all of them; each
	// header gets a one-element slice of it with no room to grow into the next.
	vals [numVals]string
}

// The header values an exchange holds.
const (
	valForwardedFor = iota
	valForwardedHost
	valForwardedProto
	valRequestID
	valBackend
	valResponseID
	numVals
)

// Value returns the exchange itself under contextKey, its request body under
// resilience.ClientBodyKey, else what the client's context holds.
func (ex *exchange) Value(key any) any {
	switch key {
	case contextKey{}:
		return ex
	case resilience.ClientBodyKey{}:
		if ex.body.rc == nil {
			return nil
		}
		return &ex.body
	}
	return ex.Context.Value(key)
}

// set sets header k to the exchange's value i, as http.Header.Set does for a canonical k.
func (ex *exchange) set(h http.Header, k string, i int, v string) {
	ex.vals[i] = v
	h[k] = ex.vals[i : i+1 : i+1]
}

// serve routes one request and proxies it.
func (f *Facade) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t := f.table.Load()
	hasBody := r.Body != nil && r.Body != http.NoBody
	var deadline bool
	if hasBody {
		// The body must arrive within the body timeout, counted from now, whatever becomes
		// of the request: a client too slow to send it cannot hold a connection, a
		// bulkhead slot or a goroutine for longer. Once the body is in, clientBody lifts
		// the deadline.
		deadline = http.NewResponseController(w).SetReadDeadline(start.Add(t.bodyTimeout)) == nil
	}
	id := r.Header.Get(headerRequestID)
	if !validID(id) {
		id = f.ids.next()
	}
	p, err := route.Clean(r.URL)
	if err != nil {
		f.metrics.badPath.Inc()
		refuse(w, r, id, problem.New(http.StatusBadRequest, "ambiguous_path",
			"the request path has encoded slashes, backslashes or hidden dot segments"))
		return
	}
	i := t.router.Match(r.Method, p, r.Header)
	var rt *Route
	if i >= 0 {
		rt = t.routes[i]
	}
	// A backend's own endpoints (metrics, health checks) are not the clients' business: an
	// internal path is answered as if no route matched.
	if rt == nil || t.internalPath(p, rt) {
		if rt == nil {
			f.metrics.noRoute.Inc()
		} else {
			f.metrics.internal.Inc()
		}
		pr := problem.New(http.StatusNotFound, "no_route", "no route matches "+r.Method+" "+p)
		pr.Instance = p
		refuse(w, r, id, pr)
		return
	}
	if r.ContentLength > t.maxBody {
		rt.primary.m.clients[bodyTooLarge].Inc()
		w.Header().Set("Connection", "close") // the body is not read
		pr := problem.New(http.StatusRequestEntityTooLarge, reasons[bodyTooLarge],
			"the request body is larger than "+strconv.FormatInt(t.maxBody, 10)+" bytes")
		pr.Instance = p
		refuse(w, r, id, pr)
		return
	}
	ex := &exchange{Context: r.Context(), route: rt, path: p, id: id, header: t.header, override: t.overrideHeader,
		chosen: rt.primary, served: rt.primary}
	ex.w.ResponseWriter = w
	if rt.canary != nil || len(r.Header[t.overrideHeader]) > 0 {
		if !f.choose(w, r, t, rt, ex) {
			return
		}
	}
	out := r.WithContext(ex)
	var s *sample
	// A protocol upgrade (WebSocket) is a connection, not an answer to compare.
	if ex.chosen == rt.primary && rt.shadows(r.Method) && len(r.Header["Upgrade"]) == 0 && f.chance(rt.sample) {
		s = f.newSample(t, rt, r, p, id, start)
	}
	rec := f.records(t, r.Method)
	var whole []byte
	if hasBody {
		b := &ex.body
		b.rc, b.w, b.left, b.deadline = r.Body, w, t.maxBody, deadline
		out.Body = b
		if s != nil || rec {
			// The shadow and the recording need the body too: it is read whole first, up
			// to the larger of their limits.
			limit := int64(0)
			if s != nil {
				limit = int64(t.shadow.MaxBodyBytes)
			}
			if rec {
				limit = max(limit, int64(t.record.MaxBodyBytes))
			}
			var reason string
			out.Body, out.GetBody, whole, reason = readShadowBody(b, limit)
			if s != nil && (reason != "" || int64(len(whole)) > int64(t.shadow.MaxBodyBytes)) {
				f.dropSample(rt, cmp.Or(reason, dropBodyTooLarge))
				s = nil
			}
			if rec && (reason != "" || int64(len(whole)) > int64(t.record.MaxBodyBytes)) {
				f.metrics.recorded.WithLabelValues("dropped").Inc()
				rec = false
			}
		}
	}
	if s != nil {
		s.body = whole
		if f.enqueue(s) {
			ex.sample = s
		}
	}
	if rec {
		f.recordRequest(t, r, p, whole)
	}
	defer func() {
		if ex.body.rc != nil {
			ex.body.detach()
		}
		d := time.Since(start)
		ex.served.m.observe(ex.status, d.Seconds())
		if ex.sample != nil {
			ex.sample.finishPrimary(d)
		}
		if rt.canary != nil && !ex.forced && !ex.clientFault {
			f.observeCanary(rt, ex, d)
		}
	}()
	f.proxy.ServeHTTP(&ex.w, out)
}

// headerAdminToken carries the admin token on a client request that overrides a canary
// route's backend. It is never forwarded.
const headerAdminToken = "Ficus-Admin-Token"

// choose picks the backend a request to a canary route is meant for: the one a tester's
// override header names, when the override is honoured, else the canary for the split's
// share (none once rolled back), else the primary. It answers a bad override itself and
// then returns false.
func (f *Facade) choose(w http.ResponseWriter, r *http.Request, t *table, rt *Route, ex *exchange) bool {
	if v := r.Header[t.overrideHeader]; len(v) > 0 && f.overrideAllowed(r, t) {
		name := strings.TrimSpace(v[0])
		switch {
		case name == rt.primary.backend.Name:
			ex.chosen = rt.primary
		case rt.canary != nil && name == rt.canary.backend.Name:
			ex.chosen = rt.canary
		default:
			names := rt.primary.backend.Name
			if rt.canary != nil {
				names += " or " + rt.canary.backend.Name
			}
			pr := problem.New(http.StatusBadRequest, "bad_override",
				fmt.Sprintf("%s names backend %q; route %s serves from %s", t.overrideHeader, name, rt.Name, names))
			pr.Instance = ex.path
			refuse(w, r, ex.id, pr)
			return false
		}
		ex.served, ex.forced = ex.chosen, true
		return true
	}
	// An override that is not honoured is dropped on the way (rewrite), and the request
	// placed as any other.
	if rt.canary != nil && rt.live.rolledBack.Load() == nil && rt.split.Canary(r, f.draw) {
		ex.chosen, ex.served = rt.canary, rt.canary
	}
	return true
}

// overrideAllowed says whether a request's override header is honoured: it carries the
// admin token, or comes (by its connection, never X-Forwarded-For) from an override network.
func (f *Facade) overrideAllowed(r *http.Request, t *table) bool {
	if tok := r.Header[headerAdminToken]; len(tok) > 0 && subtle.ConstantTimeCompare([]byte(tok[0]), []byte(f.token)) == 1 {
		return true
	}
	if len(t.overrideNets) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	for _, n := range t.overrideNets {
		if ip != nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

// refuse answers a request the facade turns away before any backend sees it.
func refuse(w http.ResponseWriter, r *http.Request, id string, p *problem.Problem) {
	w.Header().Set(headerRequestID, id)
	problem.Write(w, r, p)
}

// rewrite aims the outbound request at the route's primary backend and sets the
// forwarding headers, as ProxyRequest.SetXForwarded would, and the request id.
func (f *Facade) rewrite(pr *httputil.ProxyRequest) {
	ex := exchangeFrom(pr.In.Context())
	ex.served.backend.point(pr.Out.URL, ex.path)
	pr.Out.Host = ""
	h := pr.Out.Header
	// Facade controls are the facade's: a client's never reach a backend. A dry-run mark
	// from a client is dropped, so the request runs for real as its client meant.
	delete(h, dryrun.Header)
	delete(h, headerAdminToken)
	delete(h, ex.override)
	// ReverseProxy drops the client's X-Forwarded-For before Rewrite; the client's address
	// is appended to it rather than replacing it.
	if clientIP, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		ex.set(h, "X-Forwarded-For", valForwardedFor, clientIP)
	}
	ex.set(h, "X-Forwarded-Host", valForwardedHost, pr.In.Host)
	proto := "http"
	if pr.In.TLS != nil {
		proto = "https"
	}
	ex.set(h, "X-Forwarded-Proto", valForwardedProto, proto)
	ex.set(h, headerRequestID, valRequestID, ex.id)
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
	if err != nil && ex.chosen == ex.route.canary && ex.route.canary != nil {
		ex.canaryFailed = true
	}
	// A canary that cannot serve falls back to the route's primary, the known good side.
	fallback := ex.route.fallback
	if ex.chosen != ex.route.primary {
		fallback = ex.route.primary
	}
	if err != nil && fallback != nil && canFallBack(req, err) {
		fb := fallback
		d.f.logs.log(d.f.log, slog.LevelWarn, "fallback/"+ex.route.Name, "primary unavailable; serving from the fallback",
			"route", ex.route.Name, "backend", ex.served.backend.Name, "fallback", fb.backend.Name, "request_id", ex.id, "err", err)
		fb.m.fallbacks.Inc()
		out := req.Clone(req.Context())
		fb.backend.point(out.URL, ex.path)
		ex.served = fb
		resp, err = fb.backend.rt.RoundTrip(out)
	}
	if err != nil {
		return nil, err
	}
	if s := ex.sample; s != nil && ex.served == ex.route.primary && resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body = s.tee(resp.StatusCode, resp.Header, resp.Body)
	}
	ex.set(resp.Header, ex.header, valBackend, ex.served.backend.Name)
	ex.set(resp.Header, headerRequestID, valResponseID, ex.id)
	ex.status = resp.StatusCode
	return resp, nil
}

// canFallBack reports whether a request the primary could not serve may go to the
// fallback: it is safe, has no body to replay, its client is still there, and the primary's
// breaker is open, its health check marks it down, or it could not be reached. Timeouts and
// full bulkheads do not fall back: the primary may be working on the request, or merely busy.
func canFallBack(req *http.Request, err error) bool {
	if !resilience.Safe(req.Method) || (req.Body != nil && req.Body != http.NoBody) || req.Context().Err() != nil {
		return false
	}
	if errors.Is(err, resilience.ErrCircuitOpen) || errors.Is(err, resilience.ErrUnhealthy) {
		return true
	}
	return !errors.Is(err, resilience.ErrTimeout) && !errors.Is(err, resilience.ErrBulkheadFull) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// proxyError answers a request that could not be proxied: the one place such failures
// become problem responses. It tells the client's failures (its body, its going away) from
// the backend's, so only the backend's count against the backend.
func (f *Facade) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	ex := exchangeFrom(req.Context())
	if ex == nil {
		problem.Write(w, req, problem.New(http.StatusBadGateway, "backend_unreachable", "the request could not be proxied"))
		return
	}
	h := w.Header()
	h.Set(headerRequestID, ex.id)
	if reason, ok := classify(req, &ex.body, err); ok {
		f.clientError(w, req, ex, reason, err)
		return
	}
	b := ex.served.backend
	h.Set(ex.header, b.Name)
	var (
		kind errKind
		p    *problem.Problem
	)
	switch {
	case errors.Is(err, resilience.ErrCircuitOpen):
		kind = errCircuitOpen
		p = problem.New(http.StatusServiceUnavailable, codes[kind], "backend "+b.Name+" is failing; its circuit breaker is open")
		p.RetryAfter = b.retryAfter()
	case errors.Is(err, resilience.ErrUnhealthy):
		kind = errUnhealthy
		p = problem.New(http.StatusServiceUnavailable, codes[kind], "backend "+b.Name+" is failing its health checks")
		p.RetryAfter = b.healthRetryAfter()
	case errors.Is(err, resilience.ErrBulkheadFull):
		kind = errBulkheadFull
		p = problem.New(http.StatusServiceUnavailable, codes[kind], "backend "+b.Name+" is at its concurrency limit")
		p.RetryAfter = 1
	case errors.Is(err, resilience.ErrTimeout):
		kind = errTimeout
		p = problem.New(http.StatusGatewayTimeout, codes[kind], "backend "+b.Name+" did not answer within "+b.Config.Timeout.String())
	default:
		kind = errUnreachable
		p = problem.New(http.StatusBadGateway, codes[kind], "backend "+b.Name+" could not be reached")
	}
	ex.served.m.errors[kind].Inc()
	ex.status = p.Status
	p.Instance = ex.path
	f.logs.log(f.log, slog.LevelWarn, "backend/"+b.Name+"/"+p.Code, "backend request failed",
		"route", ex.route.Name, "backend", b.Name, "code", p.Code, "request_id", ex.id, "err", err)
	problem.Write(w, req, p)
}

// clientError answers a request that failed through its client's fault. Nothing is held
// against the backend: the failure is counted by reason, apart from the backend's errors.
func (f *Facade) clientError(w http.ResponseWriter, req *http.Request, ex *exchange, reason clientReason, err error) {
	ex.served.m.clients[reason].Inc()
	ex.clientFault = true
	var p *problem.Problem
	code := reasons[reason]
	switch reason {
	case bodyTooLarge:
		p = problem.New(http.StatusRequestEntityTooLarge, code, "the request body is larger than the facade accepts")
	case bodyTimeout:
		p = problem.New(http.StatusRequestTimeout, code, "the request body did not arrive in time")
	case bodyMalformed:
		p = problem.New(http.StatusBadRequest, code, "the request body could not be read: it is malformed")
	default:
		// Nobody is likely to read this; it is a standard status all the same. 499 is
		// what the metrics and the log say.
		p = problem.New(http.StatusBadRequest, code, "the client closed the request before it was answered")
	}
	ex.status = p.Status
	if reason == clientClosed {
		ex.status = statusClientClosed
	}
	f.logs.log(f.log, slog.LevelInfo, "client/"+code, "request failed through the client's fault",
		"route", ex.route.Name, "reason", code, "status", ex.status, "request_id", ex.id, "err", err)
	p.Instance = ex.path
	// The rest of the body, if any, is not read: this connection serves no other request.
	w.Header().Set("Connection", "close")
	problem.Write(w, req, p)
}

// statusClientClosed labels, in the metrics and the log only, a request whose client went
// away: nginx's 499. It is never sent.
const statusClientClosed = 499

// flushWriter sends each piece of a response body to the client as soon as the backend
// sends it. The proxy's own FlushInterval is 0, because httputil.ReverseProxy implements
// "flush at once" (-1) with a timer that fires at once, in another goroutine, for every
// response, and so writes the headers and the body in two system calls. Here the headers
// of a response with a known length up to the size of one copy buffer go out with the
// body, in one write; any other response has its headers flushed at once, as before, and
// responses of unknown length and event streams are still flushed by the proxy itself.
type flushWriter struct {
	http.ResponseWriter
}

// WriteHeader sends the status and headers, at once unless the body is known to be small
// enough to follow in the same write.
func (w *flushWriter) WriteHeader(code int) {
	w.ResponseWriter.WriteHeader(code)
	if code < 200 {
		return
	}
	if cl := w.Header()["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n <= copyBufferSize {
			return
		}
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Write writes p and flushes it to the client.
func (w *flushWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	if err == nil {
		_ = http.NewResponseController(w.ResponseWriter).Flush() // as ReverseProxy does: a failed flush shows on the next write
	}
	return n, err
}

// FlushError flushes what was written to the client.
func (w *flushWriter) FlushError() error { return http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the server's writer (to hijack upgraded
// connections, set deadlines).
func (w *flushWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bufferPool lends the proxy its 32 KiB copy buffers, so streaming a body allocates none.
// It pools array pointers, which a buffer converts back to without allocating.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

var _ httputil.BufferPool = (*bufferPool)(nil)

// Get returns a buffer.
func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[copyBufferSize]byte); ok {
		return v[:]
	}
	return new([copyBufferSize]byte)[:]
}

// Put returns a buffer to the pool.
func (b *bufferPool) Put(buf []byte) {
	if len(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf))
	}
}
