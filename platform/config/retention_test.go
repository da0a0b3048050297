package config_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ficus-project/ficus/platform/config"
)

func TestRetentionDefaults(t *testing.T) {
	cfg, err := config.Parse("c.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	r, ev := cfg.Retention, cfg.Events
	for _, c := range []struct {
		name      string
		got, want time.Duration
	}{
		{"retention.idempotency", r.Idempotency.D(), 24 * time.Hour},
		{"retention.outbox", r.Outbox.D(), 24 * time.Hour},
		{"retention.inbox", r.Inbox.D(), 8 * 24 * time.Hour},
		{"retention.interval", r.Interval.D(), time.Minute},
		{"events.stream.max_age", ev.Stream.MaxAge.D(), 7 * 24 * time.Hour},
		{"events.dead_letters.max_age", ev.DeadLetters.MaxAge.D(), 30 * 24 * time.Hour},
	} {
		if c.got != c.want {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}
	if r.Batch != 1000 || r.MaxBatches != 10 {
		t.Errorf("retention.batch, max_batches = %d, %d; want 1000, 10", r.Batch, r.MaxBatches)
	}
	if ev.Stream.MaxBytes != 1<<30 || ev.DeadLetters.MaxBytes != 256<<20 {
		t.Errorf("max_bytes = %s, %s; want 1GiB, 256MiB", ev.Stream.MaxBytes, ev.DeadLetters.MaxBytes)
	}
}

// TestInboxRetentionFollowsTheStream: left unset, the inbox keeps ids a day longer than the
// stream keeps events, whatever the stream's max_age.
func TestInboxRetentionFollowsTheStream(t *testing.T) {
	cfg, err := config.Parse("c.yaml", []byte(valid+"events: { stream: { max_age: 48h, max_bytes: 64MiB } }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Retention.Inbox.D(); got != 72*time.Hour {
		t.Errorf("retention.inbox = %s, want 72h (max_age + 24h)", got)
	}
	if got := cfg.Events.Stream.MaxBytes; got != 64<<20 {
		t.Errorf("events.stream.max_bytes = %d, want %d", got, 64<<20)
	}
	if got := cfg.Events.DeadLetters.MaxBytes; got != 256<<20 {
		t.Errorf("events.dead_letters.max_bytes = %s, want the default 256MiB", got)
	}
}

func TestRetentionProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"inbox shorter than the stream", "retention: { inbox: 24h }\nevents: { stream: { max_age: 48h } }\n",
			[]string{"c.yaml:11:14: retention.inbox: must be at least events.stream.max_age (48h0m0s)"}},
		{"bad size", "events: { stream: { max_bytes: 12 parsecs } }\n",
			[]string{`c.yaml:11:32: events.stream.max_bytes: invalid size "12 parsecs"`}},
		{"size not a scalar", "events: { dead_letters: { max_bytes: [1] } }\n",
			[]string{"events.dead_letters.max_bytes: expects a single value"}},
		{"tiny stream", "events: { stream: { max_bytes: 1KiB }, dead_letters: { max_age: 1m } }\n",
			[]string{"events.stream.max_bytes: must be at least 1MiB, got 1KiB", "events.dead_letters.max_age: must be at least 2m0s (the duplicate window)"}},
		{"size overflow", "events: { stream: { max_bytes: 9000000TiB } }\n", []string{"events.stream.max_bytes: size \"9000000TiB\" is too large"}},
		{"batch", "retention: { batch: 1000000, max_batches: -1, interval: 10ms }\n",
			[]string{"retention.batch: must be between 1 and 100000", "retention.max_batches: must be between 1 and 1000", "retention.interval: must be at least 1s"}},
		{"unknown field", "retention: { outbox: 1h, inbx: 1h }\n", []string{`retention.inbx: unknown field "inbx"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("c.yaml", []byte(valid+tt.yaml))
			var cerr *config.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%s", w, err)
				}
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]config.ByteSize{
		"512MiB": 512 << 20, "1GiB": 1 << 30, "1 GiB": 1 << 30, "100MB": 100e6, "64KiB": 64 << 10,
		"2kB": 2000, "2KB": 2000, "3TB": 3e12, "1TiB": 1 << 40, "4096": 4096, "7B": 7, "0": 0,
	} {
		got, err := config.ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1MiB", "1.5GiB", "1 gigabyte", "1mib", "0x10", "9223372036854775807KiB"} {
		if got, err := config.ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", bad, got)
		}
	}
	for size, want := range map[config.ByteSize]string{512 << 20: "512MiB", 1 << 30: "1GiB", 1500: "1500B", 0: "0B", 3 << 10: "3KiB"} {
		if got := size.String(); got != want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(size), got, want)
		}
	}
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"512MiB", "1 GiB", "100MB", "4096", "9223372036854775807", "1TiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := config.ParseByteSize(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d, negative", s, b)
		}
		again, err := config.ParseByteSize(b.String())
		if err != nil || again != b {
			t.Fatalf("ParseByteSize(%q) = %d, whose String %q parses as %d, %v", s, b, b.String(), again, err)
		}
	})
}

// TestRepoConfigStatesTheRetentionDefaults: config.yaml spells out the retention and stream
// limits; they must be the defaults, or its comments mislead.
func TestRepoConfigStatesTheRetentionDefaults(t *testing.T) {
	repo, err := config.Load(filepath.Join("..", "..", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := config.Parse("c.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if repo.Retention != defaults.Retention {
		t.Errorf("config.yaml retention = %+v, defaults %+v", repo.Retention, defaults.Retention)
	}
	if repo.Events.Stream != defaults.Events.Stream || repo.Events.DeadLetters != defaults.Events.DeadLetters {
		t.Errorf("config.yaml stream limits = %+v, %+v; defaults %+v, %+v",
			repo.Events.Stream, repo.Events.DeadLetters, defaults.Events.Stream, defaults.Events.DeadLetters)
	}
}
