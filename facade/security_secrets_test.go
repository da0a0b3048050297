package facade

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// planted are secrets a facade run is given in every place a secret can come from; none may
// appear in its logs, its admin API or its diff samples.
var planted = []string{"PLANTED-AUTH", "PLANTED-COOKIE", "PLANTED-SETCOOKIE", "PLANTED-PW", "PLANTED-CLIENT-SECRET",
	"PLANTED-URL-PASS", "PLANTED-DEAD-PASS", "PLANTED-CUSTOM", "PLANTED-API-TOKEN"}

// TestSecretsStayOutOfLogsAdminAndDiffs runs a facade with shadowing on, through answers
// that differ in secret fields, a backend that fails, and admin calls, with its logs at
// debug; then looks for every planted secret in the logs, the admin API's answers and the
// diff file.
func TestSecretsStayOutOfLogsAdminAndDiffs(t *testing.T) {
	primary, candidate := startBackend(t, "primary"), startBackend(t, "candidate")
	answer := func(n int, pw string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Set-Cookie", "sid=PLANTED-SETCOOKIE-"+pw)
			w.Header().Set("X-Custom-Secret", "PLANTED-CUSTOM-"+pw)
			fmt.Fprintf(w, `{"n":%d,"user":{"password":"PLANTED-PW-%s","client_secret":"PLANTED-CLIENT-SECRET-%s","apiToken":"PLANTED-API-TOKEN-%s"}}`, n, pw, pw, pw)
		}
	}
	primary.set(answer(1, "a"))
	candidate.set(answer(2, "b"))
	withPass := strings.Replace(primary.URL(), "http://", "http://ops:PLANTED-URL-PASS@", 1)
	dead := strings.Replace(deadURL(t), "http://", "http://ops:PLANTED-DEAD-PASS@", 1)
	h := startFacade(t, fmt.Sprintf(`
facade:
  shadow: { report_file: diffs.jsonl, redact_headers: [X-Custom-Secret] }
backends:
  primary: { url: %s }
  candidate: { url: %s }
  dead: { url: %s, retry: { attempts: 1 }, health: { disabled: true } }
routes:
  - name: items
    match: { path: /api/inventory, methods: [GET] }
    to: primary
    shadow: { to: candidate, recheck: 0s }
  - match: { path: /dead }
    to: dead
  - match: { path: / }
    to: primary
`, withPass, candidate.URL(), dead))
	secretHeaders := http.Header{"Authorization": {"Bearer PLANTED-AUTH"}, "Cookie": {"sid=PLANTED-COOKIE"}}
	for i := range 3 {
		h.get("GET", fmt.Sprintf("/api/inventory/items/%d", i), secretHeaders)
	}
	rep := h.awaitSamples("items", 3)
	if rep.Differences != 3 {
		t.Fatalf("want 3 differing samples, got %+v", rep)
	}
	if status, _, _ := h.get("GET", "/dead", secretHeaders); status < 500 {
		t.Fatalf("the dead backend answered %d", status)
	}
	var seen strings.Builder
	for _, path := range []string{"/api/routes", "/api/backends", "/api/config", "/api/reload", "/api/shadow", "/api/promotion", "/metrics"} {
		status, body := h.adminGet(path, testToken)
		if status != 200 {
			t.Errorf("%s: %d", path, status)
		}
		fmt.Fprintf(&seen, "--- admin %s\n%s\n", path, body)
	}
	// The differing values are shown, so the sample is not empty; the secrets are not.
	status, body := h.adminGet("/api/shadow", testToken)
	if status != 200 || !strings.Contains(body, `"/n"`) || !strings.Contains(body, "[redacted]") {
		t.Errorf("/api/shadow shows no redacted sample: %s", body)
	}
	file, err := os.ReadFile(filepath.Join(filepath.Dir(h.path), "diffs.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&seen, "--- diff file\n%s\n--- logs\n%s\n", file, h.logs.String())
	for _, s := range planted {
		if i := strings.Index(seen.String(), s); i >= 0 {
			t.Errorf("%s leaked: …%s…", s, seen.String()[max(0, i-200):min(len(seen.String()), i+60)])
		}
	}
}
