package facade

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ficus-project/ficus/platform/config"
)

// adminPaths returns every path the admin API registers (read from the facade's source, so
// that a route added later is probed too) and documents, with variants that try to slip
// past the token check.
func adminPaths(t *testing.T) []string {
	t.Helper()
	paths := map[string]bool{"/": true, "/nope": true, "/api": true, "/api/": true}
	registered := regexp.MustCompile(`\.(?:Handle|HandleFunc|GET|POST|PUT|DELETE|Any|Static)\(\s*"([^"]+)"`)
	files, _ := filepath.Glob("*.go")
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range registered.FindAllSubmatch(src, -1) {
			p := string(m[1])
			if i := strings.IndexByte(p, ' '); i >= 0 { // "GET /path" patterns
				p = p[i+1:]
			}
			paths[strings.ReplaceAll(p, "{", "x")] = true
		}
	}
	doc, err := os.ReadFile("../docs/facade.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("`(?:GET )?(/(?:api|metrics|dashboard)[A-Za-z0-9/_.-]*)").FindAllSubmatch(doc, -1) {
		paths[string(m[1])] = true
	}
	if !paths["/api/routes"] || !paths["/metrics"] {
		t.Fatalf("found no admin routes in the source: %v", paths)
	}
	var out []string
	for p := range paths {
		out = append(out, p, p+"/", p+"?token="+testToken, "/healthz/.."+p, "/readyz/../"+strings.TrimPrefix(p, "/"), "/%2e"+p, strings.ToUpper(p))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestAdminNeverServesWithoutTheToken: every admin path but the two health checks and the
// dashboard's page and static files, with every method, answers 401 without the token, with a
// wrong one, with the token in the wrong place, and — when no token was configured — with any
// token at all. The page and its files are open (the sign-in form must load), so they must
// hold no data: without the token they answer only HTML, CSS or JavaScript, or an error.
func TestAdminNeverServesWithoutTheToken(t *testing.T) {
	paths := adminPaths(t)
	open := func(p string) bool { p, _, _ = strings.Cut(p, "?"); return p == "/healthz" || p == "/readyz" }
	static := func(p string) bool {
		p, _, _ = strings.Cut(p, "?")
		return p == "/" || p == "/dashboard" || strings.HasPrefix(p, "/dashboard/")
	}
	staticType := regexp.MustCompile(`^(text/html|text/css|text/javascript|application/javascript|image/)`)
	bad := map[string]http.Header{
		"none":         {},
		"wrong":        {"Authorization": {"Bearer wrong"}},
		"empty bearer": {"Authorization": {"Bearer "}},
		"basic":        {"Authorization": {"Basic " + testToken}},
		"no scheme":    {"Authorization": {testToken}},
		"proxy header": {"Ficus-Admin-Token": {testToken}},
	}
	h := startFacade(t, "backends: { m: { url: http://127.0.0.1:1, health: { disabled: true } } }\nroutes: [{ match: { path: / }, to: m }]\n")
	probeType := func(h *harness, method, path string, header http.Header) (int, string) {
		req, err := http.NewRequest(method, h.admin.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = path // sent as written, not cleaned
		req.Header = header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Content-Type")
	}
	probe := func(h *harness, method, path string, header http.Header) int {
		code, _ := probeType(h, method, path, header)
		return code
	}
	for _, p := range paths {
		for _, method := range []string{"GET", "HEAD", "POST", "DELETE"} {
			for name, hdr := range bad {
				got, ctype := probeType(h, method, p, hdr)
				switch {
				case static(p):
					if got == 200 && !staticType.MatchString(ctype) {
						t.Errorf("%s %s with %s token: 200 %s; the dashboard's open files must be only its page, styles and script", method, p, name, ctype)
					}
				case got != 401 && !open(p):
					t.Errorf("%s %s with %s token: %d, want 401", method, p, name, got)
				}
			}
		}
		if got := probe(h, "GET", p, http.Header{"Authorization": {"Bearer " + testToken}}); got == 401 {
			t.Errorf("GET %s with the token: 401", p)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if got := probe(h, "GET", p, http.Header{}); got != 200 {
			t.Errorf("GET %s without a token: %d, want 200", p, got)
		}
	}

	// No token configured: the admin API is closed to everyone, whatever they send.
	cfg, err := config.Parse("config.yaml", []byte("backends: { m: { url: http://127.0.0.1:1, health: { disabled: true } } }\nroutes: [{ match: { path: / }, to: m }]\n"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	srv := httptest.NewServer(f.AdminHandler())
	t.Cleanup(srv.Close)
	closed := &harness{t: t, admin: srv}
	for _, tok := range []string{"", " ", testToken, "null", "undefined"} {
		if got := probe(closed, "GET", "/api/routes", http.Header{"Authorization": {"Bearer " + tok}}); got != 401 {
			t.Errorf("without a configured token, Bearer %q got %d, want 401", tok, got)
		}
	}
}

// TestAdminListensOnLoopbackUnlessAllowed: the default admin address is loopback, a config
// that puts it elsewhere is refused naming allow_remote, and allow_remote lets it through.
// (TestServeRefusesRemoteAdmin covers a listener bound elsewhere by -admin.)
func TestAdminListensOnLoopbackUnlessAllowed(t *testing.T) {
	base := "backends: { m: { url: http://127.0.0.1:1 } }\nroutes: [{ match: { path: / }, to: m }]\n"
	cfg, err := config.Parse("config.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := strings.Cut(cfg.Facade.Admin.Listen, ":"); host != "127.0.0.1" {
		t.Errorf("default admin address %s is not loopback", cfg.Facade.Admin.Listen)
	}
	for _, addr := range []string{"0.0.0.0:9900", ":9900", "10.1.2.3:9900", "[::]:9900"} {
		_, err := config.Parse("config.yaml", []byte(fmt.Sprintf("facade: { admin: { listen: %q } }\n%s", addr, base)))
		if err == nil || !strings.Contains(err.Error(), "allow_remote") {
			t.Errorf("admin on %s: %v, want a refusal naming allow_remote", addr, err)
		}
		if _, err := config.Parse("config.yaml", []byte(fmt.Sprintf("facade: { admin: { listen: %q, allow_remote: true } }\n%s", addr, base))); err != nil {
			t.Errorf("admin on %s with allow_remote: %v", addr, err)
		}
	}
}
