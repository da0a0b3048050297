package facade

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ficus-project/ficus/platform/config"
)

func tokenConfig(t *testing.T) *config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "config.yaml"),
		[]byte("backends: { m: { url: http://127.0.0.1:1 } }\nroutes: [{ match: { path: / }, to: m }]\n"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestAdminTokenFromVariableFileOrGenerated(t *testing.T) {
	cfg := tokenConfig(t)
	none := func(string) string { return "" }
	if _, _, err := ReadAdminToken(cfg, none); !errors.Is(err, ErrNoAdminToken) || !strings.Contains(err.Error(), "FICUS_ADMIN_TOKEN") {
		t.Fatalf("no token anywhere: err = %v, want ErrNoAdminToken naming the variable", err)
	}
	tok, src, err := AdminToken(cfg, none)
	if err != nil || len(tok) < 32 || !strings.Contains(src, "admin.token") {
		t.Fatalf("generated: %q from %q, %v", tok, src, err)
	}
	path := cfg.Resolve(cfg.Facade.Admin.TokenFile)
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v; want 0600", err, st.Mode())
	}
	again, src, err := AdminToken(cfg, none)
	if err != nil || again != tok || src != path {
		t.Fatalf("second run: %q from %q, %v; want the file's token", again, src, err)
	}
	env := func(k string) string { return map[string]string{"FICUS_ADMIN_TOKEN": " from-env "}[k] }
	if got, src, err := ReadAdminToken(cfg, env); err != nil || got != "from-env" || src != "$FICUS_ADMIN_TOKEN" {
		t.Fatalf("variable: %q from %q, %v; the variable wins over the file", got, src, err)
	}
}
