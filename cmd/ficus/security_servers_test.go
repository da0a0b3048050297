package main

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/web"
)

// TestEveryServerIsBounded finds every HTTP server the module's non-test code builds and
// checks it is one whose limits are tested: web.NewServer (the monolith, the services,
// ficus compare), the facade's two (facade.TestServersAreBounded), or a benchmark's
// throwaway server. A server built any other way fails this test until it is bounded and
// listed here.
func TestEveryServerIsBounded(t *testing.T) {
	allowed := map[string]string{
		"platform/web/server.go":             "web.NewServer itself",
		"facade/serve.go":                    "the proxy and admin servers (facade.TestServersAreBounded)",
		"cmd/ficus/internal/bench/orders.go": "a benchmark's loopback server",
		"cmd/ficus/internal/bench/facade.go": "a benchmark's loopback server",
	}
	literal := regexp.MustCompile(`http\.Server\s*{`)
	root := "../.."
	found := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if literal.Match(src) {
			found++
			if _, ok := allowed[rel]; !ok {
				t.Errorf("%s builds an http.Server of its own: use web.NewServer, or bound it and list it here", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 2 {
		t.Fatalf("found %d servers; is the walk looking at the module?", found)
	}
	// What every component served with web.NewServer gets (serveHTTP: monolith, inventory,
	// payments): bounded headers, bodies and idle connections.
	srv := web.NewServer(http.NotFoundHandler(), web.ServerOptions{})
	if srv.ReadHeaderTimeout <= 0 || srv.ReadHeaderTimeout > 30*time.Second || srv.IdleTimeout <= 0 ||
		srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 1<<20 {
		t.Errorf("web.NewServer's limits: header %v idle %v max header %d", srv.ReadHeaderTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
}
