package scenario

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ficus-project/ficus/platform/compare"
)

// Recorded is one request of recorded traffic, a line of the JSON-lines file the facade
// writes (facade.record) and ReadTraffic reads.
type Recorded struct {
	Time   time.Time   `json:"time"`
	Method string      `json:"method"`
	Path   string      `json:"path"`
	Query  string      `json:"query,omitempty"`
	Header http.Header `json:"header,omitempty"`
	// Body is the request body when it is UTF-8 text; BodyBase64 otherwise.
	Body       string `json:"body,omitempty"`
	BodyBase64 string `json:"body_base64,omitempty"`
}

// Redacted is the value recorded in place of a secret header's; such headers are not sent
// when the traffic is replayed.
const Redacted = "[redacted]"

// maxRecordedLine bounds one line of a traffic file.
const maxRecordedLine = 16 << 20

// ReadTraffic reads a JSON-lines traffic file, calling each for every request with its line
// number, and stops at the first error (a line that is not a request names its line).
func ReadTraffic(r io.Reader, each func(line int, rec Recorded) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxRecordedLine)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var rec Recorded
		if err := json.Unmarshal(line, &rec); err != nil {
			return fmt.Errorf("line %d: not a recorded request: %w", n, err)
		}
		if rec.Method == "" || !strings.HasPrefix(rec.Path, "/") {
			return fmt.Errorf("line %d: a recorded request needs a method and a path starting with /", n)
		}
		if err := each(n, rec); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading traffic: %w", err)
	}
	return nil
}

// ReplayOptions tune Replay. The zero value replays safe requests with DefaultRules.
type ReplayOptions struct {
	// Rules are added to DefaultRules. Default none.
	Rules compare.Rules
	// Endpoints name the requests' endpoints in the report, as in Options. Default none.
	Endpoints []string
	// Writes replays unsafe requests too (POST, PUT, PATCH, DELETE): they act on both
	// sides. Default false: they are skipped and counted.
	Writes bool
	// Timeout bounds each request. Default 10s.
	Timeout time.Duration
	// MaxSamples bounds the differing answers kept per endpoint. Default 20.
	MaxSamples int
	// MaxResponse bounds each answer's body; a longer one is a failure. Default 8 MiB.
	MaxResponse int64
	// Where names the traffic in the report ("traffic.jsonl"). Default "traffic".
	Where string
	// Progress, when set, is called after each request with the requests replayed so far.
	Progress func(done int)
}

// ReplayStats counts what a replay skipped.
type ReplayStats struct {
	// Skipped counts the unsafe requests not replayed (ReplayOptions.Writes is false).
	Skipped int
}

// Replay sends each recorded request that traffic yields to A and then to B, compares the
// answers under DefaultRules and opts.Rules (ids each side generated are paired over the
// whole replay), and reports per endpoint as Run does. Secret headers recorded as Redacted
// are not sent. The error is for a replay that could not be made; differences and failures
// are in the report.
func Replay(ctx context.Context, traffic func(each func(line int, rec Recorded) error) error, a, b Target, opts ReplayOptions) (*Report, ReplayStats, error) {
	var stats ReplayStats
	o := Options{Rules: opts.Rules, Endpoints: opts.Endpoints, Timeout: opts.Timeout, MaxSamples: opts.MaxSamples, MaxResponse: opts.MaxResponse}
	o.setDefaults()
	if opts.Where == "" {
		opts.Where = "traffic"
	}
	for i, t := range []*Target{&a, &b} {
		if t.Name == "" {
			t.Name = [...]string{"A", "B"}[i]
		}
		if t.URL == "" {
			return nil, stats, fmt.Errorf("replaying: target %s has no URL", t.Name)
		}
	}
	endpoints, err := compare.NewEndpoints(o.Endpoints)
	if err != nil {
		return nil, stats, err
	}
	c, err := compare.New(DefaultRules().Merge(o.Rules))
	if err != nil {
		return nil, stats, fmt.Errorf("replaying: %w", err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r := &runner{opts: o, endpoints: endpoints}
	r.a = &side{label: "A", Target: a, client: client}
	r.b = &side{label: "B", Target: b, client: client}
	r.report = newReport("traffic "+opts.Where, a.Name, b.Name, o)
	start := time.Now()
	done := 0
	err = traffic(func(line int, rec Recorded) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		defer func() {
			done++
			if opts.Progress != nil {
				opts.Progress(done)
			}
		}()
		if !opts.Writes && !safe(rec.Method) {
			stats.Skipped++
			return nil
		}
		bd, err := rec.built()
		if err != nil {
			return fmt.Errorf("%s:%d: %w", opts.Where, line, err)
		}
		r.report.Steps++
		where := opts.Where + ":" + strconv.Itoa(line)
		ba, bb := bd, bd
		ba.url, bb.url = strings.TrimSuffix(a.URL, "/")+bd.path, strings.TrimSuffix(b.URL, "/")+bd.path
		xa, xb := r.send(ctx, r.a, ba), r.send(ctx, r.b, bb)
		ep := r.report.endpoint(endpoints.Name(rec.Method, rec.Path))
		ep.Requests++
		for _, p := range []struct {
			s *side
			x *exchange
		}{{r.a, &xa}, {r.b, &xb}} {
			if p.x.err != nil {
				ep.Failures++
				r.report.fail(Failure{Scenario: "replay", Step: "line " + strconv.Itoa(line), Where: where, Side: p.s.display(),
					Endpoint: ep.Endpoint, Request: ptr(p.x.req), Message: fmt.Sprintf("request failed: %v", p.x.err)})
			}
		}
		if xa.err != nil || xb.err != nil {
			return nil
		}
		res := c.Compare(xa.resp, xb.resp, &r.ids)
		ep.Ignored += res.Ignored
		if res.Equal() {
			ep.Matches++
			return nil
		}
		ep.Differences++
		ep.sample(o.MaxSamples, Mismatch{Scenario: "replay", Step: "line " + strconv.Itoa(line), Where: where,
			Request: xa.req, Differences: res.Differences, Omitted: res.Omitted})
		return nil
	})
	rep := r.report.finish(time.Since(start))
	if err != nil {
		return rep, stats, fmt.Errorf("replaying %s: %w", opts.Where, err)
	}
	return rep, stats, nil
}

// built turns a recorded request into one to send: its path with the query, its headers
// but the redacted ones and those of one connection, its body.
func (rec Recorded) built() (built, error) {
	b := built{method: rec.Method, path: rec.Path, header: http.Header{}}
	if rec.Query != "" {
		b.path += "?" + rec.Query
	}
	for k, vs := range rec.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Host", "Content-Length", "Connection", "Keep-Alive", "Transfer-Encoding", "Te", "Upgrade":
			continue
		}
		for _, v := range vs {
			if v != Redacted {
				b.header.Add(k, v)
			}
		}
	}
	switch {
	case rec.BodyBase64 != "":
		body, err := base64.StdEncoding.DecodeString(rec.BodyBase64)
		if err != nil {
			return built{}, fmt.Errorf("body_base64: %w", err)
		}
		b.body = body
	case rec.Body != "":
		b.body = []byte(rec.Body)
	}
	return b, nil
}

func safe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// ErrOverThreshold says a report's differences exceed the allowed share.
var ErrOverThreshold = errors.New("differences over the threshold")

// DiffRate is the share of compared answers that differ.
func (r *Report) DiffRate() float64 {
	t := r.Totals()
	if n := t.Matches + t.Differences; n > 0 {
		return float64(t.Differences) / float64(n)
	}
	return 0
}
