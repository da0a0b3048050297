package config_test

import (
	"strings"
	"testing"

	"github.com/ficus-project/ficus/platform/config"
)

// TestDatabaseURLs: ficus check accepts the database URLs Ficus opens and explains the ones it
// cannot, naming the field, without ever showing a password.
func TestDatabaseURLs(t *testing.T) {
	tests := []struct {
		dsn  string
		want string // "" for valid, else a piece of the message
	}{
		{"sqlite:data/monolith.db", ""},
		{"postgres://ficus:secret@127.0.0.1:5432/shop?sslmode=disable", ""},
		{"postgresql://ficus@db.internal/shop", ""},
		{"postgres://ficus:secret@[::1]:5432/shop?sslmode=verify-full&connect_timeout=5&application_name=ficus", ""},
		{"postgres://ficus:secret@pg1:5432,pg2:5433/shop?target_session_attrs=read-write", ""},
		{"postgres://ficus:secret@/shop?host=/var/run/postgresql", ""},
		{"sqlite:", "needs a file path"},
		{"mysql://ficus:secret@x/shop", "want sqlite:PATH or postgres://"},
		{"postgres://ficus:secret@127.0.0.1:5432/", "names no database"},
		{"postgres://ficus:secret@127.0.0.1:5432", "names no database"},
		{"postgres://ficus:secret@/shop", "names no host"},
		{"postgres://ficus:secret@127.0.0.1:99999/shop", `invalid port "99999"`},
		{"postgres://ficus:secret@127.0.0.1:port/shop", "invalid"},
		{"postgres://ficus:secret@127.0.0.1/shop?sslmode=off", `unknown sslmode "off"`},
		{"postgres://ficus:secret@127.0.0.1/shop?connect_timeout=soon", "connect_timeout"},
		{"postgres://ficus:secret@127.0.0.1/a/b", "contains a slash"},
		{"postgres://ficus:secret@127.0.0.1/shop#x", "fragment"},
		{"postgres://ficus:sec%zzret@127.0.0.1/shop", "invalid postgres URL"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			yaml := "backends: { monolith: { url: http://127.0.0.1:8081 } }\nroutes: [{ match: { path: / }, to: monolith }]\n" +
				"monolith: { database: '" + tt.dsn + "' }\n"
			_, err := config.Parse("config.yaml", []byte(yaml))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) || !strings.Contains(msg, "monolith.database") || !strings.Contains(msg, "config.yaml:3") {
				t.Errorf("error %q does not say %q at config.yaml:3, monolith.database", msg, tt.want)
			}
			if strings.Contains(msg, "secret") || strings.Contains(msg, "sec%zzret") {
				t.Errorf("error shows the password: %s", msg)
			}
		})
	}
}
