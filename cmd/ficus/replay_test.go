package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ficus-project/ficus/facade"
	"github.com/ficus-project/ficus/platform/config"
)

// item answers like an inventory item for the SKU at the end of the path; name changes
// the name of SKU-7's.
func itemServer(t *testing.T, name7 string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sku := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		name := "Thing " + sku
		if sku == "SKU-7" {
			name = name7
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"sku":%q,"name":%q,"auth":%q}`, sku, name, r.Header.Get("Authorization"))
	}))
	t.Cleanup(s.Close)
	return s
}

// TestRecordAndReplay: the facade records a redacted sample of live traffic as JSON lines;
// ficus compare -traffic replays it against two servers and prints the make compare report,
// exiting 1 when the differing share is over -threshold.
func TestRecordAndReplay(t *testing.T) {
	a, b := itemServer(t, "Thing SKU-7"), itemServer(t, "Thing Seven")
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "config.yaml"), []byte(fmt.Sprintf(`
facade:
  record: { file: traffic.jsonl, sample: 1 }
backends:
  a: { url: %s }
routes:
  - match: { path: / }
    to: a
`, a.URL)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := facade.New(cfg, facade.Options{})
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(f.Handler())
	for i := range 10 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/inventory/items/SKU-%d?x=%d", proxy.URL, i, i), nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	resp, err := http.Post(proxy.URL+"/api/inventory/items", "application/json", strings.NewReader(`{"sku":"N"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	traffic := filepath.Join(dir, "traffic.jsonl")
	waitFor(t, "10 recorded requests", func() bool {
		b, _ := os.ReadFile(traffic)
		return bytes.Count(b, []byte("\n")) == 10
	})
	proxy.Close()
	f.Close() // flushes and closes the file
	rec, _ := os.ReadFile(traffic)
	if strings.Contains(string(rec), "s3cret") || !strings.Contains(string(rec), `"Authorization":["[redacted]"]`) || !strings.Contains(string(rec), `"query":"x=3"`) {
		t.Fatalf("the recording:\n%s", rec)
	}

	var out, errOut bytes.Buffer
	err = run(context.Background(), []string{"compare", "-traffic", traffic, "-a", a.URL, "-b", a.URL}, func(string) string { return "" }, &out, &errOut)
	if err != nil || !strings.Contains(out.String(), "GET /api/inventory/items/{sku}  10        10") || !strings.Contains(out.String(), "passed") {
		t.Fatalf("replay against the same server: %v\n%s%s", err, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	err = run(context.Background(), []string{"compare", "-traffic", traffic, "-a", a.URL, "-b", b.URL}, func(string) string { return "" }, &out, &errOut)
	if exitCode(err) != 1 || !strings.Contains(out.String(), "body /name: changed") || !strings.Contains(out.String(), `+ B: "Thing Seven"`) ||
		!strings.Contains(errOut.String(), "10.00% of the answers differ (threshold 0.00%)") {
		t.Fatalf("replay with one differing answer: %v\n%s%s", err, out.String(), errOut.String())
	}
	if strings.Contains(out.String(), "Bearer") {
		t.Errorf("a redacted header was sent on replay:\n%s", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"compare", "-traffic", traffic, "-a", a.URL, "-b", b.URL, "-threshold", "0.2"},
		func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("10%% differing under a 20%% threshold: %v", err)
	}
}
