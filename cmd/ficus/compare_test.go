package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ficus-project/ficus/extracted/inventory"
	"github.com/ficus-project/ficus/monolith"
	"github.com/ficus-project/ficus/platform/compare/scenario"
	"github.com/ficus-project/ficus/platform/config"
)

// readReports reads what ficus compare -json wrote.
func readReports(t *testing.T, path string) []scenario.Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var reps []scenario.Report
	if err := json.Unmarshal(b, &reps); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return reps
}

// TestCompareTheExtractedServices is make compare: each extracted service answers every
// scenario of its suite as the monolith does, and the JSON report says so too.
func TestCompareTheExtractedServices(t *testing.T) {
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	started := time.Now()
	out, err := exec.Command(ficusBin, "compare", "-json", jsonPath).CombinedOutput()
	if code := exitStatus(err); code != 0 {
		t.Fatalf("ficus compare: exit %d\n%s", code, out)
	}
	t.Logf("ficus compare took %s", time.Since(started))
	for _, want := range []string{
		"Comparison of A (monolith) and B (inventory service), suite inventory",
		"Comparison of A (monolith) and B (payments service), suite payments",
		"ficus compare: passed: inventory, payments",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	reps := readReports(t, jsonPath)
	if len(reps) != 2 || reps[0].Suite != "inventory" || reps[1].Suite != "payments" {
		t.Fatalf("the JSON report holds %d reports, want inventory and payments", len(reps))
	}
	for _, r := range reps {
		var matches, differences int
		for _, e := range r.Endpoints {
			matches += e.Matches
			differences += e.Differences
		}
		if matches == 0 || differences != 0 || len(r.Failures) != 0 {
			t.Errorf("suite %s: %d matches, %d differences, %d failures", r.Suite, matches, differences, len(r.Failures))
		}
	}
}

// serveHandler serves h on loopback until the test ends.
func serveHandler(t *testing.T, h http.Handler) string {
	t.Helper()
	u, stop, err := serveLoopback(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return u
}

// testMonolith is a monolith on a fresh SQLite database, served on loopback.
func testMonolith(t *testing.T) string {
	t.Helper()
	m, err := monolith.New(context.Background(), &config.Config{Monolith: config.Monolith{
		Database: "sqlite:" + filepath.Join(t.TempDir(), "monolith.db")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return serveHandler(t, m.Handler())
}

var itemPath = regexp.MustCompile(`^/api/inventory/items/[^/]+$`)

// TestCompareNamesTheFieldABrokenCandidateChanged: an inventory service that reports one
// unit more available than it has, on single-item reads only, fails ficus compare -a -b
// with exit 1, and both reports name the endpoint and the field.
func TestCompareNamesTheFieldABrokenCandidateChanged(t *testing.T) {
	srv, err := inventory.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "inventory.db"), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	real := srv.Handler()
	broken := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !itemPath.MatchString(r.URL.Path) {
			real.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		real.ServeHTTP(rec, r)
		var item map[string]any
		dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
		dec.UseNumber()
		body := rec.Body.Bytes()
		if dec.Decode(&item) == nil && item["available"] != nil {
			n, _ := item["available"].(json.Number).Int64()
			item["available"] = n + 1
			body, _ = json.Marshal(item)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	out, err := exec.Command(ficusBin, "compare", "-suite", "inventory", "-json", jsonPath,
		"-a", testMonolith(t), "-b", serveHandler(t, broken)).CombinedOutput()
	if code := exitStatus(err); code != 1 {
		t.Fatalf("a broken candidate: exit %d, want 1\n%s", code, out)
	}
	const endpoint = "GET /api/inventory/items/{sku}"
	for _, want := range []string{endpoint, "body /available: changed", "ficus compare: FAILED: inventory"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the text report lacks %q:\n%s", want, out)
		}
	}
	reps := readReports(t, jsonPath)
	found := false
	for _, e := range reps[0].Endpoints {
		if e.Endpoint != endpoint {
			if e.Differences > 0 {
				t.Errorf("%s differs too, but the candidate only broke %s", e.Endpoint, endpoint)
			}
			continue
		}
		for _, s := range e.Samples {
			for _, d := range s.Differences {
				found = found || d.Path == "/available"
			}
		}
	}
	if !found {
		t.Errorf("the JSON report does not name /available under %s", endpoint)
	}
}

// TestCompareTwoRunningPaymentsSides: -a and -b compare running servers; for payments,
// -b-setup sends B's customers to a monolith that feeds the service through the bus, and
// -b-caught-up waits on the service's /readyz/customers before each compared step that
// follows a setup.
func TestCompareTwoRunningPaymentsSides(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, stop, err := paymentsSide(ctx, t.TempDir(), nil, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	out, err := exec.Command(ficusBin, "compare", "-suite", "payments", "-a", testMonolith(t), "-b", b.URL,
		"-b-setup", b.SetupURL, "-b-caught-up", b.URL+"/readyz/customers").CombinedOutput()
	if code := exitStatus(err); code != 0 || !strings.Contains(string(out), "ficus compare: passed: payments") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

// TestCompareRefusesWhatItCannotRun: flags that do not go together are usage errors (exit 2)
// that say why, before anything starts.
func TestCompareRefusesWhatItCannotRun(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-a", "http://127.0.0.1:1"}, "-a and -b go together"},
		{[]string{"-b-setup", "http://127.0.0.1:1"}, "-b-setup and -b-caught-up need -a and -b"},
		{[]string{"-a", "http://127.0.0.1:1", "-b", "http://127.0.0.1:2"}, "name the suites to run with -suite"},
		{[]string{"-suite", "orders"}, `suite "orders" has no extracted service`},
		{[]string{"-suite", "nothing", "-a", "http://127.0.0.1:1", "-b", "http://127.0.0.1:2"}, `unknown suite "nothing"`},
		{[]string{"-suite", "inventory", "-a", "127.0.0.1:1", "-b", "http://127.0.0.1:2"}, `-a "127.0.0.1:1" is not an http:// or https:// URL`},
	} {
		out, err := exec.Command(ficusBin, append([]string{"compare"}, tt.args...)...).CombinedOutput()
		if code := exitStatus(err); code != 2 || !strings.Contains(string(out), tt.want) {
			t.Errorf("compare %v: exit %d, want 2 and %q\n%s", tt.args, code, tt.want, out)
		}
	}
}
