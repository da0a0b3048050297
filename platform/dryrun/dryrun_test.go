package dryrun

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/config"
)

func TestSignAndVerify(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	s := NewSigner([]byte("k"), clock)
	v := NewVerifier([]byte("k"), time.Minute, clock)
	h := s.Sign("POST", "/api/x")
	if err := v.Verify("POST", "/api/x", h); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ method, path, value string }{
		"method":  {"PUT", "/api/x", h},
		"path":    {"POST", "/api/y", h},
		"garbage": {"POST", "/api/x", "v1:x:y"},
		"format":  {"POST", "/api/x", "yes"},
		"secret":  {"POST", "/api/x", NewSigner([]byte("other"), clock).Sign("POST", "/api/x")},
		"old":     {"POST", "/api/x", NewSigner([]byte("k"), func() time.Time { return now.Add(-2 * time.Minute) }).Sign("POST", "/api/x")},
	} {
		if err := v.Verify(c.method, c.path, c.value); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
	var nilV *Verifier
	if err := nilV.Verify("POST", "/api/x", h); !errors.Is(err, ErrRefused) {
		t.Errorf("nil verifier: %v", err)
	}
}

// TestLoadSecretOnceForAll: processes starting at once (goroutines here) all end up with the
// one secret written to the file; the variable wins over the file.
func TestLoadSecretOnceForAll(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{Path: filepath.Join(dir, "config.yaml"), DryRun: config.DryRun{SecretEnv: "S", SecretFile: "data/dry.secret"}}
	var wg sync.WaitGroup
	secrets := make([]string, 8)
	for i := range secrets {
		wg.Go(func() {
			s, _, err := LoadSecret(cfg, func(string) string { return "" })
			if err != nil {
				t.Error(err)
			}
			secrets[i] = string(s)
		})
	}
	wg.Wait()
	for _, s := range secrets {
		if s == "" || s != secrets[0] {
			t.Fatalf("secrets differ: %q", secrets)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "data/dry.secret"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", fi, err)
	}
	s, src, err := LoadSecret(cfg, func(k string) string { return map[string]string{"S": "from-env"}[k] })
	if err != nil || string(s) != "from-env" || src != "$S" {
		t.Fatalf("from the variable: %q %q %v", s, src, err)
	}
}
