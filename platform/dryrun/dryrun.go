// Package dryrun lets the facade shadow a write to an extracted service without the write
// taking effect: the facade marks the copy with a signed Ficus-Dry-Run header, and the
// service runs the whole request — validation, domain rules, its idempotency middleware —
// inside one unit of work that it then rolls back, so that it answers as it would have,
// and no row, outbox event or idempotency record is left.
//
// The header is signed with HMAC-SHA256 over the method, the path and the time, with a
// secret the facade shares with the services (config dry_run: the variable it names, else
// its file, else a random one that the first process to need it writes there). A client
// cannot mark a request dry: the facade drops a client's header before forwarding, and a
// service refuses (403, dry_run_refused) a header it cannot verify rather than run the
// request for real. Without the secret, dry runs are a fraud tool: a dry charge would tell
// a card tester whether a card is good without charging it.
package dryrun

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ficus-project/ficus/platform/config"
)

// Header marks a request as a dry run. On the answer, the value Done says the service
// honoured it and rolled its work back.
const Header = "Ficus-Dry-Run"

// Done is the Header value a service answers a dry run with.
const Done = "rolled-back"

// ErrRefused wraps every reason a header is not accepted.
var ErrRefused = errors.New("dry-run header refused")

// Signer signs the dry-run header. Its zero value cannot sign.
type Signer struct {
	secret []byte
	now    func() time.Time
}

// NewSigner returns a signer with secret, telling the time with now (time.Now when nil).
func NewSigner(secret []byte, now func() time.Time) *Signer {
	if now == nil {
		now = time.Now
	}
	return &Signer{secret: secret, now: now}
}

// Sign returns the header value for a request with method to path (the path the service
// sees, without the query): "v1:UNIXSECONDS:HEXMAC".
func (s *Signer) Sign(method, path string) string {
	ts := strconv.FormatInt(s.now().Unix(), 10)
	return "v1:" + ts + ":" + mac(s.secret, method, path, ts)
}

func mac(secret []byte, method, path, ts string) string {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(method))
	h.Write([]byte{'\n'})
	h.Write([]byte(path))
	h.Write([]byte{'\n'})
	h.Write([]byte(ts))
	return hex.EncodeToString(h.Sum(nil))
}

// Verifier checks the dry-run header. A nil Verifier refuses every header.
type Verifier struct {
	secret []byte
	maxAge time.Duration
	now    func() time.Time
}

// NewVerifier returns a verifier with secret that accepts headers signed up to maxAge ago
// (or as far ahead: clocks differ), telling the time with now (time.Now when nil).
func NewVerifier(secret []byte, maxAge time.Duration, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{secret: secret, maxAge: maxAge, now: now}
}

// Verify checks value, the header of a request with method to path. Its error wraps
// ErrRefused and says why.
func (v *Verifier) Verify(method, path, value string) error {
	if v == nil || len(v.secret) == 0 {
		return fmt.Errorf("%w: this service has no dry-run secret", ErrRefused)
	}
	parts := strings.Split(value, ":")
	if len(parts) != 3 || parts[0] != "v1" {
		return fmt.Errorf("%w: want v1:TIME:SIGNATURE", ErrRefused)
	}
	ts, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad time %q", ErrRefused, parts[1])
	}
	if age := v.now().Sub(time.Unix(ts, 0)); age > v.maxAge || age < -v.maxAge {
		return fmt.Errorf("%w: signed %s ago, accepted for %s", ErrRefused, age.Round(time.Second), v.maxAge)
	}
	if !hmac.Equal([]byte(parts[2]), []byte(mac(v.secret, method, path, parts[1]))) {
		return fmt.Errorf("%w: the signature does not match (not the facade's, or another secret)", ErrRefused)
	}
	return nil
}

// secretBytes is the length of a generated secret.
const secretBytes = 32

// LoadSecret returns the dry-run secret of cfg and says where it came from: the variable
// dry_run.secret_env names, else the file dry_run.secret_file (relative to the config), else
// a new random secret written there (mode 0600). Processes starting at once agree: the file
// is created by linking a complete temporary file into place, which fails if another
// process got there first, and then that one's secret is read.
func LoadSecret(cfg *config.Config, getenv func(string) string) (secret []byte, source string, err error) {
	if getenv != nil {
		if s := strings.TrimSpace(getenv(cfg.DryRun.SecretEnv)); s != "" {
			return []byte(s), "$" + cfg.DryRun.SecretEnv, nil
		}
	}
	path := cfg.Resolve(cfg.DryRun.SecretFile)
	if s, err := readSecret(path); err == nil {
		return s, path, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, "", fmt.Errorf("writing the dry-run secret: %w", err)
	}
	raw := make([]byte, secretBytes)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", fmt.Errorf("making the dry-run secret: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".dry-run-secret-*")
	if err != nil {
		return nil, "", fmt.Errorf("writing the dry-run secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(hex.EncodeToString(raw) + "\n")
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), 0o600)
	}
	if werr != nil {
		return nil, "", fmt.Errorf("writing the dry-run secret: %w", werr)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, "", fmt.Errorf("writing the dry-run secret: %w", err)
	}
	s, err := readSecret(path)
	if err != nil {
		return nil, "", err
	}
	return s, path, nil
}

func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("reading the dry-run secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, fmt.Errorf("reading the dry-run secret: %s is empty; delete it and a new secret is written", path)
	}
	return []byte(s), nil
}
