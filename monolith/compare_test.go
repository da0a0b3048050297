package monolith_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/compare"
	"github.com/ficus-project/ficus/platform/compare/scenario"
	"github.com/ficus-project/ficus/platform/compare/scenarios"
	"github.com/ficus-project/ficus/platform/contract"
)

// runSuite runs a suite of the shop's scenarios from side a to side b, checking every answer
// against the OpenAPI document, and returns the report, logged in full when it failed.
func runSuite(t *testing.T, name string, a, b scenario.Target, only ...string) *scenario.Report {
	t.Helper()
	suite, err := scenarios.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	v := shopValidator(t)
	rep, err := scenario.Run(ctx, suite, a, b, scenario.Options{
		Endpoints: v.Operations(),
		Check:     checkContract(v),
		Scenarios: only,
		Timeout:   30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// checkContract checks answers against the OpenAPI document: every contract break fails
// the suite.
func checkContract(v *contract.Validator) func(context.Context, *http.Request, int, http.Header, []byte) error {
	return v.CheckResponse
}

// shopValidator is the OpenAPI validator the shop's tests share.
func shopValidator(t *testing.T) *contract.Validator {
	t.Helper()
	validatorOnce.Do(func() { validator, validatorErr = contract.NewValidator() })
	if validatorErr != nil {
		t.Fatal(validatorErr)
	}
	return validator
}

func reportText(t *testing.T, rep *scenario.Report) string {
	t.Helper()
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// serve starts h on loopback for the test.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// Two monoliths on fresh databases, given the same scenarios, answer alike: every suite
// passes with no difference and no failed expectation, and it compared what it sent.
func TestCompareSuitesMonolithVsMonolith(t *testing.T) {
	for _, name := range scenarios.Names() {
		t.Run(name, func(t *testing.T) {
			a, b := newShop(t), newShop(t)
			rep := runSuite(t, name, scenario.Target{Name: "monolith-a", URL: a.url}, scenario.Target{Name: "monolith-b", URL: b.url})
			text := reportText(t, rep)
			if rep.Failed() {
				t.Fatalf("monolith vs monolith failed:\n%s", text)
			}
			tot := rep.Totals()
			if tot.Matches == 0 || tot.Matches+tot.Differences > tot.Requests || rep.Steps == 0 {
				t.Errorf("nothing was compared: %+v\n%s", tot, text)
			}
			t.Logf("\n%s", text)
		})
	}
}

// rewrite wraps h and lets change edit the answers to requests that match.
func rewrite(h http.Handler, match func(*http.Request) bool, change func(rec *httptest.ResponseRecorder)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !match(r) {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		change(rec)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

var itemPath = regexp.MustCompile(`^/api/inventory/items/[^/]+$`)

func TestCompareCatchesAChangedField(t *testing.T) {
	a, b := newShop(t), newShop(t)
	// The candidate reports one more unit available than it has, on single-item reads only.
	broken := rewrite(b.m.Handler(), func(r *http.Request) bool {
		return r.Method == http.MethodGet && itemPath.MatchString(r.URL.Path)
	}, func(rec *httptest.ResponseRecorder) {
		var item map[string]any
		dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
		dec.UseNumber()
		if dec.Decode(&item) != nil || item["available"] == nil {
			return
		}
		n, _ := item["available"].(json.Number).Int64()
		item["available"] = n + 1
		body, _ := json.Marshal(item)
		rec.Body = bytes.NewBuffer(body)
	})
	rep := runSuite(t, "inventory", scenario.Target{Name: "monolith", URL: a.url}, scenario.Target{Name: "broken", URL: serve(t, broken)})
	text := reportText(t, rep)
	if !rep.Failed() {
		t.Fatalf("the suite passed a candidate that changes a field:\n%s", text)
	}
	const endpoint = "GET /api/inventory/items/{sku}"
	for _, e := range rep.Endpoints {
		switch {
		case e.Endpoint == endpoint:
			if e.Differences == 0 || len(e.Samples) == 0 {
				t.Fatalf("%s: no differences reported:\n%s", endpoint, text)
			}
			for _, s := range e.Samples {
				if len(s.Differences) != 1 || s.Differences[0].Path != "/available" || s.Differences[0].Part != compare.PartBody {
					t.Errorf("%s: differences %+v, want exactly /available", endpoint, s.Differences)
				}
			}
		case e.Differences > 0:
			t.Errorf("%s differs too, but the candidate only broke %s", e.Endpoint, endpoint)
		}
	}
	if !strings.Contains(text, endpoint) || !strings.Contains(text, "body /available: changed") {
		t.Errorf("the text report does not name the endpoint and the field:\n%s", text)
	}
	t.Logf("the report on a candidate that changes one field:\n%s", text)
}

func TestCompareCatchesAChangedStatus(t *testing.T) {
	a, b := newShop(t), newShop(t)
	// The candidate answers 202 where the contract says 200.
	broken := rewrite(b.m.Handler(), func(r *http.Request) bool {
		return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/restock")
	}, func(rec *httptest.ResponseRecorder) {
		if rec.Code == http.StatusOK {
			rec.Code = http.StatusAccepted
		}
	})
	rep := runSuite(t, "inventory", scenario.Target{Name: "monolith", URL: a.url}, scenario.Target{Name: "broken", URL: serve(t, broken)})
	text := reportText(t, rep)
	if !rep.Failed() {
		t.Fatalf("the suite passed a candidate that changes a status:\n%s", text)
	}
	const endpoint = "POST /api/inventory/items/{sku}/restock"
	found := false
	for _, e := range rep.Endpoints {
		if e.Endpoint != endpoint {
			if e.Differences > 0 {
				t.Errorf("%s differs too, but the candidate only broke %s", e.Endpoint, endpoint)
			}
			continue
		}
		for _, s := range e.Samples {
			for _, d := range s.Differences {
				found = found || (d.Part == compare.PartStatus && d.A == "200" && d.B == "202")
			}
		}
	}
	if !found || !strings.Contains(text, "status: changed") || !strings.Contains(text, "the answer breaks the contract") {
		t.Errorf("the report does not name %s's status 200 → 202:\n%s", endpoint, text)
	}
}

// alwaysCreated is a candidate that accepts every request on path with 201 and the body the
// real handler would give for a fresh resource, without checking stock or credit: it
// oversells (or overcharges).
func alwaysCreated(real http.Handler, method, path string, body func(req map[string]any) any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method || r.URL.Path != path {
			real.ServeHTTP(w, r)
			return
		}
		var req map[string]any
		_ = json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(body(req))
	})
}

func overselling(real http.Handler) http.Handler {
	return alwaysCreated(real, http.MethodPost, "/api/inventory/reservations", func(req map[string]any) any {
		return map[string]any{"order_id": req["order_id"], "state": "held", "lines": req["lines"], "updated_at": time.Now().UTC()}
	})
}

func overcharging(real http.Handler) http.Handler {
	var n atomic.Int64
	return alwaysCreated(real, http.MethodPost, "/api/payments", func(req map[string]any) any {
		return map[string]any{"id": "0190a8a0-0000-7000-8000-" + strings.Repeat("0", 6) + itoa6(n.Add(1)), "customer_id": req["customer_id"],
			"amount_cents": req["amount_cents"], "reference": req["reference"], "status": "captured", "created_at": time.Now().UTC()}
	})
}

func itoa6(n int64) string {
	s := strings.Repeat("0", 6) + itoa(int(n))
	return s[len(s)-6:]
}

func TestCompareCatchesOverselling(t *testing.T) {
	t.Run("candidate oversells", func(t *testing.T) {
		a, b := newShop(t), newShop(t)
		rep := runSuite(t, "inventory", scenario.Target{Name: "monolith", URL: a.url},
			scenario.Target{Name: "overselling", URL: serve(t, overselling(b.m.Handler()))}, "reservation-race")
		text := reportText(t, rep)
		if !rep.Failed() || !strings.Contains(text, "statuses 201×200, want 201×50, 409×150") {
			t.Fatalf("the overselling candidate was not caught:\n%s", text)
		}
		if !strings.Contains(text, "on B (overselling)") || strings.Contains(text, "on A (monolith)") {
			t.Errorf("the failure is not pinned on the candidate:\n%s", text)
		}
	})
	t.Run("both sides oversell alike", func(t *testing.T) {
		a, b := newShop(t), newShop(t)
		rep := runSuite(t, "inventory", scenario.Target{Name: "overselling-a", URL: serve(t, overselling(a.m.Handler()))},
			scenario.Target{Name: "overselling-b", URL: serve(t, overselling(b.m.Handler()))}, "reservation-race")
		text := reportText(t, rep)
		if rep.Totals().Differences != 0 {
			t.Errorf("two alike candidates differ:\n%s", text)
		}
		if !rep.Failed() || strings.Count(text, "statuses 201×200, want 201×50, 409×150") != 2 {
			t.Fatalf("overselling on both sides was not a failure on both:\n%s", text)
		}
	})
	t.Run("candidate overcharges", func(t *testing.T) {
		a, b := newShop(t), newShop(t)
		rep := runSuite(t, "payments", scenario.Target{Name: "monolith", URL: a.url},
			scenario.Target{Name: "overcharging", URL: serve(t, overcharging(b.m.Handler()))}, "charge-race")
		text := reportText(t, rep)
		if !rep.Failed() || !strings.Contains(text, "statuses 201×200, want 201×50, 402×150") {
			t.Fatalf("the overcharging candidate was not caught:\n%s", text)
		}
	})
}

// A capability's service serves only its own paths; data it does not own (customers, for
// payments) is set up through another URL, and the runner waits for the service to catch up
// before it compares. Here the "service" is a second monolith that refuses customers, set up
// through that monolith's own URL.
func TestCompareWithASetupURL(t *testing.T) {
	a, b := newShop(t), newShop(t)
	// The service refuses customers: a setup step sent to it rather than to the setup URL fails.
	paymentsOnly := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/customers") {
			http.Error(w, "this service does not serve "+r.URL.Path, http.StatusTeapot)
			return
		}
		b.m.Handler().ServeHTTP(w, r)
	})
	var caughtUp atomic.Int32
	rep := runSuite(t, "payments", scenario.Target{Name: "monolith", URL: a.url}, scenario.Target{
		Name: "payments-service", URL: serve(t, paymentsOnly), SetupURL: b.url,
		CaughtUp: func(ctx context.Context) error { caughtUp.Add(1); return nil },
	})
	text := reportText(t, rep)
	if rep.Failed() {
		t.Fatalf("payments with customers set up elsewhere failed:\n%s", text)
	}
	if caughtUp.Load() == 0 {
		t.Error("the runner never waited for the service to catch up with the setup data")
	}
}
