package facade

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLogLimiter checks a kind of line goes out at most once an interval, that the next
// line says how many were held back, and that kinds are limited apart.
func TestLogLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	lim := newLogLimiter(time.Second, func() time.Time { return now })
	logs := &syncBuffer{}
	log := newTestLogger(logs)
	for range 1000 {
		lim.log(log, slog.LevelInfo, "backend/m/backend_unreachable", "backend request failed")
		lim.log(log, slog.LevelInfo, "client/body_timeout", "client failed")
	}
	if n := strings.Count(logs.String(), "\n"); n != 2 {
		t.Fatalf("%d lines for 2000 events in one instant, want 2 (one per kind):\n%s", n, logs.String())
	}
	now = now.Add(999 * time.Millisecond)
	lim.log(log, slog.LevelInfo, "backend/m/backend_unreachable", "backend request failed")
	if n := strings.Count(logs.String(), "\n"); n != 2 {
		t.Fatalf("a line went out before the interval was over:\n%s", logs.String())
	}
	now = now.Add(time.Millisecond)
	lim.log(log, slog.LevelInfo, "backend/m/backend_unreachable", "backend request failed")
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], "suppressed=1000") {
		t.Fatalf("the line after the interval must count the 1000 held back:\n%s", logs.String())
	}
}
