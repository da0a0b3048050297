package facade

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/ficus-project/ficus/platform/config"
)

// ErrNoAdminToken means neither the token variable nor the token file holds an admin token.
var ErrNoAdminToken = errors.New("no admin token")

// AdminToken returns the admin bearer token for cfg and says where it came from: the variable
// facade.admin.token_env names, else the file facade.admin.token_file, else a new random token
// that it writes to that file (mode 0600, atomically), so that `ficus routes` and the next run
// find it. The token itself is never logged; show it only to the person who started Ficus.
func AdminToken(cfg *config.Config, getenv func(string) string) (token, source string, err error) {
	token, source, err = ReadAdminToken(cfg, getenv)
	if !errors.Is(err, ErrNoAdminToken) {
		return token, source, err
	}
	token = randomToken()
	path := cfg.Resolve(cfg.Facade.Admin.TokenFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", "", fmt.Errorf("writing the admin token file: %w", err)
	}
	if err := renameio.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("writing the admin token file: %w", err)
	}
	return token, "generated, written to " + path, nil
}

// ReadAdminToken returns the admin token from the variable facade.admin.token_env names or,
// when it is empty, from the file facade.admin.token_file, and says where it came from. It
// never makes one up: without either it returns an error wrapping ErrNoAdminToken that says
// where a token comes from.
func ReadAdminToken(cfg *config.Config, getenv func(string) string) (token, source string, err error) {
	env := cfg.Facade.Admin.TokenEnv
	if t := strings.TrimSpace(getenv(env)); t != "" {
		return t, "$" + env, nil
	}
	path := cfg.Resolve(cfg.Facade.Admin.TokenFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, path, nil
		}
	case !errors.Is(err, os.ErrNotExist):
		return "", "", fmt.Errorf("reading the admin token file: %w", err)
	}
	return "", "", fmt.Errorf("%w: $%s is empty and %s does not exist; take the token from the `make run` banner "+
		"and export %s=TOKEN, or start Ficus once (`ficus up` or `ficus serve facade`) to write the token file",
		ErrNoAdminToken, env, path, env)
}
