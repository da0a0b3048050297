package facade

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/ficus-project/ficus/platform/compare"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/dryrun"
)

// The shadow path. A sampled request is copied into a sample before the primary sees it
// and put on a bounded queue; a fixed number of workers take samples off it, send each to
// the route's candidate, wait for the primary's answer (which the client's own request
// captures on its way through), and compare the two with the route's rules. Nothing on
// this path can hold up the client: the queue is never waited on (a full queue drops the
// sample, counted), the client's request only copies what it already has, and workers
// never touch the client's connection.

// Reasons a sample is dropped, as counted in ficus_shadow_dropped_total and reports.
const (
	dropQueueFull        = "queue_full"
	dropBodyTooLarge     = "body_too_large"
	dropResponseTooLarge = "response_too_large"
	dropPrimaryFailed    = "primary_failed"
	dropTimeout          = "timeout"
	dropClosing          = "closing"
)

// headerShadow marks the candidate's copy of a request, so its logs can tell shadow traffic.
const headerShadow = "Ficus-Shadow"

// sample is one request copied for the shadow path, and the primary's answer once it is in.
type sample struct {
	t     *table
	rt    *Route
	start time.Time
	// The request as the candidate gets it; header and endpoint are made by prepare, on the
	// worker, from the client's header, its address, host and scheme.
	method, path, query string
	header              http.Header
	body                []byte
	id                  string
	endpoint            string
	in                  http.Header // the client's request header, never changed
	remote, host        string
	tls                 bool

	// done is closed once the primary's answer is complete, or failed; the fields below are
	// set before.
	done    chan struct{}
	once    sync.Once
	pStatus int
	pHeader http.Header
	pBody   bytes.Buffer
	pEOF    bool
	pOver   bool
	pDur    time.Duration
	pBad    string // why the primary's answer cannot be compared, or ""
}

// newSample keeps what the candidate needs of r. It copies nothing: the client's request
// path pays only for the sample itself, and the worker builds the copy (prepare). The
// proxy never changes the inbound request's header (it works on its own clone), so the
// worker may read it while the client's request is still being served.
func (f *Facade) newSample(t *table, rt *Route, r *http.Request, cleanPath, id string, start time.Time) *sample {
	return &sample{t: t, rt: rt, start: start, method: r.Method, path: cleanPath, query: r.URL.RawQuery,
		id: id, done: make(chan struct{}), in: r.Header, remote: r.RemoteAddr, host: r.Host, tls: r.TLS != nil}
}

// prepare builds the candidate's header and names the sample's endpoint.
func (s *sample) prepare(f *Facade) {
	s.endpoint = f.endpoints.Name(s.method, s.path)
	h := s.in.Clone()
	if h == nil {
		h = http.Header{}
	}
	removeHopByHop(h)
	for _, k := range []string{s.t.overrideHeader, headerAdminToken, dryrun.Header} {
		delete(h, k)
	}
	if clientIP, _, err := net.SplitHostPort(s.remote); err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			clientIP = joinComma(prior) + ", " + clientIP
		}
		h.Set("X-Forwarded-For", clientIP)
	}
	h.Set("X-Forwarded-Host", s.host)
	proto := "http"
	if s.tls {
		proto = "https"
	}
	h.Set("X-Forwarded-Proto", proto)
	h.Set(headerRequestID, s.id)
	h.Set(headerShadow, "1")
	s.header = h
}

func joinComma(vs []string) string {
	var b bytes.Buffer
	for i, v := range vs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(v)
	}
	return b.String()
}

// removeHopByHop deletes the headers that concern one connection only (RFC 9110 7.6.1).
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for _, k := range bytes.Split([]byte(v), []byte(",")) {
			if k = bytes.TrimSpace(k); len(k) > 0 {
				delete(h, http.CanonicalHeaderKey(string(k)))
			}
		}
	}
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		delete(h, k)
	}
}

// tee returns body reading through to the client, copying what passes into the sample up to
// the shadow's body limit.
func (s *sample) tee(status int, header http.Header, body io.ReadCloser) io.ReadCloser {
	s.pStatus = status
	// Not a copy: the worker reads it only once the answer has been sent (done), and
	// nothing changes it after that.
	s.pHeader = header
	return &teeBody{rc: body, s: s, max: int(s.t.shadow.MaxBodyBytes)}
}

// teeBody copies a primary's answer into its sample as the client receives it.
type teeBody struct {
	rc  io.ReadCloser
	s   *sample
	max int
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	s := b.s
	if n > 0 && !s.pOver {
		if s.pBody.Len()+n > b.max {
			s.pOver = true
		} else {
			s.pBody.Write(p[:n])
		}
	}
	if err == io.EOF {
		s.pEOF = true
	}
	return n, err
}

func (b *teeBody) Close() error { return b.rc.Close() }

// finishPrimary hands the primary's answer to the sample's worker: complete, or why not.
// The client's request calls it once its answer has been sent (or failed).
func (s *sample) finishPrimary(d time.Duration) {
	s.once.Do(func() {
		s.pDur = d
		switch {
		case s.pOver:
			s.pBad = dropResponseTooLarge
		case !s.pEOF:
			s.pBad = dropPrimaryFailed
		}
		close(s.done)
	})
}

// enqueue puts s on the shadow queue, or drops it when the queue is full.
func (f *Facade) enqueue(s *sample) bool {
	select {
	case f.shadowQueue <- s:
		return true
	default:
		f.dropSample(s.rt, dropQueueFull)
		return false
	}
}

func (f *Facade) dropSample(rt *Route, reason string) {
	if c, ok := rt.dropped[reason]; ok {
		c.Inc()
	} else {
		f.metrics.shadowDropped.WithLabelValues(rt.Name, reason).Inc()
	}
	if rt.live != nil && rt.live.report != nil {
		rt.live.report.drop(reason)
	}
}

// startShadow starts the shadow workers; they stop when the facade's life ends.
func (f *Facade) startShadow(queue, workers int) {
	f.shadowQueue = make(chan job, queue)
	for range workers {
		f.checkers.Add(1)
		go func() {
			defer f.checkers.Done()
			for {
				select {
				case <-f.life.Done():
					return
				case j := <-f.shadowQueue:
					j.run(f)
				}
			}
		}()
	}
}

// job is work for a shadow worker: a sample, or a re-check of one.
type job interface{ run(f *Facade) }

func (s *sample) run(f *Facade) { f.shadowSample(s) }

// answer is one side's answer to a shadowed request.
type answer struct {
	backend string
	resp    compare.Response
	err     error
	over    bool
	dur     time.Duration
}

func (a *answer) sampled() SampledResponse {
	out := SampledResponse{Backend: a.backend, Seconds: a.dur.Seconds()}
	if a.err != nil {
		out.Error = a.err.Error()
		return out
	}
	out.Status = a.resp.Status
	out.Body = cutBody(redactBody(a.resp.Body))
	return out
}

// shadowSample sends s to the candidate, waits for the primary's answer, and compares them.
func (f *Facade) shadowSample(s *sample) {
	rt, t := s.rt, s.t
	ctx, cancel := context.WithTimeout(f.life, t.shadow.Timeout.D())
	defer cancel()
	s.prepare(f)
	cand := f.sendCopy(ctx, s, rt.shadow)
	select {
	case <-s.done:
	case <-ctx.Done():
		reason := dropTimeout
		if f.life.Err() != nil {
			reason = dropClosing
		}
		f.dropSample(rt, reason)
		return
	}
	if s.pBad != "" {
		f.dropSample(rt, s.pBad)
		return
	}
	if cand.over {
		f.dropSample(rt, dropResponseTooLarge)
		return
	}
	report := rt.live.report
	ep, err := report.endpoint(s.endpoint)
	if err != nil {
		f.dropSample(rt, "rules")
		return
	}
	prim := answer{backend: rt.primary.backend.Name, resp: compare.Response{Status: s.pStatus, Header: s.pHeader, Body: s.pBody.Bytes()}, dur: s.pDur}
	if cand.err == nil && config.SafeMethod(s.method) && f.shouldLearn(rt, ep) {
		f.learnNoise(ctx, s, rt, ep, &prim)
	}
	if rt.canary == nil || rt.Config.Canary.Percent == 0 {
		// In the shadow stage the gates judge the shadowed pairs.
		rt.live.primary.Observe(prim.resp.Status >= 500, prim.dur)
		rt.live.candidate.Observe(cand.err != nil || cand.resp.Status >= 500, cand.dur)
	}
	if cand.err != nil {
		f.finishSample(s, ep, outcomeError, &prim, &cand, compare.Result{}, false)
		return
	}
	if !config.SafeMethod(s.method) && cand.resp.Header.Get(dryrun.Header) != dryrun.Done {
		// The candidate was told to roll back and did not say it did: it may have acted.
		f.logs.log(f.log, slog.LevelError, "dryrun/"+rt.shadow.backend.Name, "shadowed write not confirmed as rolled back: the candidate may have acted on it",
			"route", rt.Name, "candidate", rt.shadow.backend.Name, "request_id", s.id, "method", s.method, "path", s.path)
		cand.err = fmt.Errorf("the candidate did not answer %s: %s; it may have acted on the write", dryrun.Header, dryrun.Done)
		f.finishSample(s, ep, outcomeError, &prim, &cand, compare.Result{}, false)
		return
	}
	res := ep.comparer.Load().Compare(prim.resp, cand.resp, report.ids)
	if res.Equal() {
		f.finishSample(s, ep, outcomeMatch, &prim, &cand, res, false)
		return
	}
	if d := rt.Config.Shadow.Recheck; d != nil && d.D() > 0 && config.SafeMethod(s.method) {
		// The candidate may only lag (ficus migrate sync): ask it again after a while, and
		// count the difference only if it stays.
		rc := &recheck{s: s, ep: ep, prim: prim, first: cand, res: res}
		time.AfterFunc(d.D(), func() {
			if f.life.Err() != nil {
				return
			}
			select {
			case f.shadowQueue <- rc:
			default:
				// No room to re-check: the difference counts as it is, never hidden.
				f.finishSample(s, ep, outcomeDiff, &rc.prim, &rc.first, rc.res, false)
			}
		})
		return
	}
	f.finishSample(s, ep, outcomeDiff, &prim, &cand, res, false)
}

// recheck asks the candidate again about a sample that differed.
type recheck struct {
	s     *sample
	ep    *endpointState
	prim  answer
	first answer
	res   compare.Result
}

func (rc *recheck) run(f *Facade) {
	s := rc.s
	ctx, cancel := context.WithTimeout(f.life, s.t.shadow.Timeout.D())
	defer cancel()
	cand := f.sendCopy(ctx, s, s.rt.shadow)
	if cand.err != nil || cand.over {
		f.finishSample(s, rc.ep, outcomeDiff, &rc.prim, &rc.first, rc.res, false)
		return
	}
	res := rc.ep.comparer.Load().Compare(rc.prim.resp, cand.resp, s.rt.live.report.ids)
	if res.Equal() {
		f.finishSample(s, rc.ep, outcomeLag, &rc.prim, &cand, res, true)
		return
	}
	f.finishSample(s, rc.ep, outcomeDiff, &rc.prim, &cand, res, true)
}

// finishSample counts a sample's outcome — report, metrics, the gates' window — keeps it
// in full when it differed, and judges a running canary's rollback gates.
func (f *Facade) finishSample(s *sample, ep *endpointState, outcome string, prim, cand *answer, res compare.Result, rechecked bool) {
	rt := s.rt
	rt.outcomes[outcome].Inc()
	var ds *DiffSample
	if outcome == outcomeDiff || outcome == outcomeError {
		extra := s.t.shadow.RedactHeaders
		ds = &DiffSample{Time: f.now(), Route: rt.Name, Endpoint: ep.name, RequestID: s.id, Rechecked: rechecked,
			Request:     SampledRequest{Method: s.method, Path: pathWithQuery(s.path, s.query), Header: redact(s.header, extra), Body: cutBody(redactBody(s.body))},
			Primary:     prim.sampled(),
			Candidate:   cand.sampled(),
			Differences: redactDifferences(res.Differences, extra), Omitted: res.Omitted}
		ds.Primary.Header = redact(prim.resp.Header, extra)
		if cand.err == nil {
			ds.Candidate.Header = redact(cand.resp.Header, extra)
		}
	}
	rt.live.report.record(ep, outcome, ds)
	if outcome != outcomeError {
		rt.live.compared.Observe(outcome == outcomeDiff, -1)
	}
	if ds != nil && outcome == outcomeDiff {
		f.diffFile.append(s.t.shadowFile, s.t.shadow.ReportMaxBytes, ds)
	}
	if rt.canary != nil {
		f.checkRollback(rt)
	}
}

func pathWithQuery(p, q string) string {
	if q == "" {
		return p
	}
	return p + "?" + q
}

// sendCopy sends the sample's request to tg and reads its answer, up to the shadow's body
// limit. The copy goes through tg's own resilience chain: a candidate that fails trips its
// own breaker, never the primary's.
func (f *Facade) sendCopy(ctx context.Context, s *sample, tg *target) answer {
	a := answer{backend: tg.backend.Name}
	start := time.Now()
	defer func() { a.dur = time.Since(start) }()
	req, err := s.request(ctx, tg)
	if err != nil {
		a.err = err
		return a
	}
	if !config.SafeMethod(s.method) {
		req.Header.Set(dryrun.Header, f.signer.Sign(s.method, req.URL.Path))
	}
	resp, err := tg.backend.rt.RoundTrip(req)
	if err != nil {
		a.err = err
		a.dur = time.Since(start)
		return a
	}
	defer resp.Body.Close()
	a.resp, a.over, a.err = readAnswer(resp, int64(s.t.shadow.MaxBodyBytes))
	a.dur = time.Since(start)
	return a
}

// request builds the sample's request to tg.
func (s *sample) request(ctx context.Context, tg *target) (*http.Request, error) {
	u := &url.URL{RawQuery: s.query}
	tg.backend.point(u, s.path)
	var body io.Reader
	if len(s.body) > 0 {
		body = bytes.NewReader(s.body)
	}
	req, err := http.NewRequestWithContext(ctx, s.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("building the shadow request: %w", err)
	}
	// Not a copy: the sample's header is its own, and its requests are sent one after the
	// other (the dry-run header of a write is signed for each).
	req.Header = s.header
	return req, nil
}

// readAnswer reads resp's body up to max bytes; over says it had more.
func readAnswer(resp *http.Response, max int64) (compare.Response, bool, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return compare.Response{}, false, fmt.Errorf("reading the answer: %w", err)
	}
	if int64(len(b)) > max {
		return compare.Response{}, true, nil
	}
	return compare.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, false, nil
}

// shouldLearn says whether this sample also goes to the primary a second time: always for
// an endpoint's first samples, then the route's learn fraction of them.
func (f *Facade) shouldLearn(rt *Route, ep *endpointState) bool {
	learn := rt.Config.Shadow.Learn
	if learn <= 0 {
		return false
	}
	return ep.learnt.Load() < alwaysLearn || f.chance(learn)
}

// learnNoise sends the sample to the primary again, straight to its transport (not through
// its bulkhead or breaker: a shadow must not take a client's place), and learns what differs
// between the primary's two answers as the endpoint's noise.
func (f *Facade) learnNoise(ctx context.Context, s *sample, rt *Route, ep *endpointState, prim *answer) {
	req, err := s.request(ctx, rt.primary)
	if err != nil {
		return
	}
	ctx2, cancel := context.WithTimeout(ctx, rt.primary.backend.Config.Timeout.D())
	defer cancel()
	resp, err := f.transport.RoundTrip(req.WithContext(ctx2))
	if err != nil {
		return
	}
	defer resp.Body.Close()
	again, over, err := readAnswer(resp, int64(s.t.shadow.MaxBodyBytes))
	if err != nil || over {
		return
	}
	res := ep.comparer.Load().Compare(prim.resp, again, nil)
	if res.Equal() {
		ep.learnt.Add(1)
		return
	}
	if added := rt.live.report.learn(ep, res); len(added) > 0 {
		f.log.Info("shadow learnt noise: these fields vary between two answers of the primary and are ignored from now on",
			"route", rt.Name, "endpoint", ep.name, "noise", added)
	}
}

// chance reports true with probability p.
func (f *Facade) chance(p float64) bool {
	if p >= 1 {
		return true
	}
	return float64(f.draw()>>11)/(1<<53) < p
}

// readShadowBody reads a request body of a sampled request, up to max bytes, so both sides
// get it. It returns the body the proxy sends on (replayable when whole) and the bytes for
// the candidate; with a body over the limit, or one the client failed to send, the sample
// is off (nil) and the proxy gets what was read followed by the rest, or the failure.
func readShadowBody(b *clientBody, max int64) (forProxy io.ReadCloser, getBody func() (io.ReadCloser, error), whole []byte, reason string) {
	buf, err := io.ReadAll(io.LimitReader(b, max+1))
	switch {
	case err != nil:
		return io.NopCloser(io.MultiReader(bytes.NewReader(buf), errReader{err})), nil, nil, "client_error"
	case int64(len(buf)) > max:
		return readCloser{io.MultiReader(bytes.NewReader(buf), b), b}, nil, nil, dropBodyTooLarge
	}
	return io.NopCloser(bytes.NewReader(buf)), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }, buf, ""
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

type readCloser struct {
	io.Reader
	io.Closer
}

// diffFile appends differing samples to the route table's report file as JSON lines,
// rotating it to FILE.1 past its size limit.
type diffFile struct {
	mu     sync.Mutex
	path   string
	f      *jsonLines
	log    *slog.Logger
	closed bool // the facade closed: a late re-check writes nothing
}

func (d *diffFile) append(path string, max config.ByteSize, s *DiffSample) {
	if path == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if d.f == nil || d.path != path {
		if d.f != nil {
			_ = d.f.close()
		}
		d.f, d.path = &jsonLines{path: path}, path
	}
	if err := d.f.write(s, int64(max)); err != nil && d.log != nil {
		d.log.Error("appending to the shadow report file", "path", path, "err", err)
	}
}

func (d *diffFile) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.f != nil {
		_ = d.f.close()
		d.f = nil
	}
}
