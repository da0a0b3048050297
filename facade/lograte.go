package facade

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// logLimiter lets through at most one log line per interval for each kind of event and
// counts the lines it holds back, which the next line let through reports. So a flood of
// failing requests grows the log by a line a second per kind, not by a line a request;
// the counters in the metrics have the full numbers.
type logLimiter struct {
	every time.Duration
	now   func() time.Time

	mu    sync.Mutex
	kinds map[string]*logKind
}

type logKind struct {
	next time.Time // when the next line may go out
	held int       // lines held back since the last one
}

// maxLogKinds bounds the limiter's memory; kinds come from the config (backends, routes and
// error codes), so it is only reached after many reloads, and then the limiter starts over.
const maxLogKinds = 4096

func newLogLimiter(every time.Duration, now func() time.Time) *logLimiter {
	return &logLimiter{every: every, now: now, kinds: map[string]*logKind{}}
}

// allow reports whether a line of this kind may be logged now and, if so, how many were
// held back before it.
func (l *logLimiter) allow(kind string) (held int, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kinds[kind]
	if k == nil {
		if len(l.kinds) >= maxLogKinds {
			clear(l.kinds)
		}
		k = &logKind{}
		l.kinds[kind] = k
	}
	if now.Before(k.next) {
		k.held++
		return 0, false
	}
	held, k.held, k.next = k.held, 0, now.Add(l.every)
	return held, true
}

// log logs msg at level unless a line of the same kind went out less than an interval
// ago; the line says how many were held back.
func (l *logLimiter) log(logger *slog.Logger, level slog.Level, kind, msg string, args ...any) {
	if !logger.Enabled(context.Background(), level) {
		return
	}
	held, ok := l.allow(kind)
	if !ok {
		return
	}
	if held > 0 {
		args = append(args, "suppressed", held)
	}
	logger.Log(context.Background(), level, msg, args...)
}

// errorLog returns the *log.Logger the HTTP servers and the reverse proxy write their own
// errors to (a client's TLS or protocol errors, a backend body cut short), at WARN and
// rate-limited like the facade's own lines, since clients can cause them at any rate.
func errorLog(logger *slog.Logger, lim *logLimiter) *log.Logger {
	return log.New(writerFunc(func(p []byte) (int, error) {
		lim.log(logger, slog.LevelWarn, "http-server", strings.TrimSpace(string(p)))
		return len(p), nil
	}), "", 0)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
