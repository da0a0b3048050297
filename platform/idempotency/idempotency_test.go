package idempotency_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/idempotency"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/store/storetest"
	"github.com/ficus-project/ficus/platform/web"
)

// TestPostgres runs the suite on PostgreSQL.
func TestPostgres(t *testing.T) {
	storetest.Postgres(t,
		TestRepeatReturnsStoredResponse, TestSameKeyDifferentBodyIs422, TestRepeatInFlightIs409,
		TestServerErrorDoesNotBurnKey, TestClientErrorIsStored, TestAbandonedClaimIsTakenOverAfterLease,
		TestEffectAndResponseCommitTogether, TestBadKeyIs400,
		TestPlainServerErrorIsNotStored, TestKeysExpire, TestLiveClaimsAreNotPruned,
		TestClaimedRunsTheHandlerOutsideATransaction, TestClaimedServerErrorAndPanicFreeTheKey,
		TestClaimedCrashBetweenClaimAndStore,
	)
}

type server struct {
	db      *gorm.DB
	effect  func(ctx context.Context, id string) error // run by the handler when set
	url     string
	calls   atomic.Int64
	fail    atomic.Int64 // while positive, the handler answers 503 and counts down
	release chan struct{}
	entered chan struct{}
}

func newServer(t *testing.T, opts idempotency.Options) *server {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, storetest.DSN(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := idempotency.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	s := &server{db: db}
	e := web.New(nil, nil)
	e.POST("/things", func(c echo.Context) error {
		n := s.calls.Add(1)
		if s.entered != nil {
			s.entered <- struct{}{}
			<-s.release
		}
		if s.effect != nil {
			if err := s.effect(c.Request().Context(), "effect-"+c.Request().Header.Get(idempotency.Header)); err != nil {
				return err
			}
		}
		if s.fail.Load() > 0 {
			s.fail.Add(-1)
			return echo.NewHTTPError(http.StatusServiceUnavailable, "try later")
		}
		var in map[string]any
		if err := web.Bind(c, &in); err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, map[string]any{"call": n, "echo": in})
	}, idempotency.Middleware(db, opts))
	srv := httptest.NewServer(e)
	t.Cleanup(func() { srv.Close(); store.Close(db) })
	s.url = srv.URL
	return s
}

func post(t *testing.T, url, key, body string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/things", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(idempotency.Header, key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func code(body string) string {
	var p struct{ Code string }
	_ = json.Unmarshal([]byte(body), &p)
	return p.Code
}

func TestRepeatReturnsStoredResponse(t *testing.T) {
	s := newServer(t, idempotency.Options{})
	st1, _, b1 := post(t, s.url, "k1", `{"a":1}`)
	st2, h2, b2 := post(t, s.url, "k1", `{"a":1}`)
	if st1 != 201 || st2 != 201 || b1 != b2 {
		t.Fatalf("repeat: %d %s / %d %s", st1, b1, st2, b2)
	}
	if h2.Get(idempotency.ReplayedHeader) != "true" {
		t.Errorf("replay not marked")
	}
	if n := s.calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
	// Without a key every request runs.
	post(t, s.url, "", `{"a":1}`)
	post(t, s.url, "", `{"a":1}`)
	if n := s.calls.Load(); n != 3 {
		t.Errorf("handler ran %d times, want 3", n)
	}
}

func TestSameKeyDifferentBodyIs422(t *testing.T) {
	s := newServer(t, idempotency.Options{})
	post(t, s.url, "k1", `{"a":1}`)
	st, _, b := post(t, s.url, "k1", `{"a":2}`)
	if st != 422 || code(b) != "idempotency_key_reused" {
		t.Fatalf("got %d %s", st, b)
	}
	if n := s.calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
}

func TestRepeatInFlightIs409(t *testing.T) {
	s := newServer(t, idempotency.Options{})
	s.entered = make(chan struct{}, 1)
	s.release = make(chan struct{})
	done := make(chan int)
	go func() {
		st, _, _ := post(t, s.url, "k1", `{"a":1}`)
		done <- st
	}()
	<-s.entered
	st, h, b := post(t, s.url, "k1", `{"a":1}`)
	if st != 409 || code(b) != "idempotency_in_flight" || h.Get("Retry-After") == "" {
		t.Errorf("in flight repeat: %d %s", st, b)
	}
	close(s.release)
	if st := <-done; st != 201 {
		t.Errorf("first request: %d", st)
	}
}

func TestServerErrorDoesNotBurnKey(t *testing.T) {
	s := newServer(t, idempotency.Options{})
	s.fail.Store(1)
	if st, _, _ := post(t, s.url, "k1", `{"a":1}`); st != 503 {
		t.Fatalf("first: %d", st)
	}
	st, h, b := post(t, s.url, "k1", `{"a":1}`)
	if st != 201 || h.Get(idempotency.ReplayedHeader) != "" {
		t.Fatalf("retry after 5xx: %d %s", st, b)
	}
	if n := s.calls.Load(); n != 2 {
		t.Errorf("handler ran %d times, want 2", n)
	}
}

func TestClientErrorIsStored(t *testing.T) {
	s := newServer(t, idempotency.Options{})
	st1, _, b1 := post(t, s.url, "k1", `{"a":`)
	st2, _, b2 := post(t, s.url, "k1", `{"a":`)
	if st1 != 400 || st2 != 400 || b1 != b2 {
		t.Fatalf("4xx not replayed: %d %s / %d %s", st1, b1, st2, b2)
	}
}

func TestAbandonedClaimIsTakenOverAfterLease(t *testing.T) {
	now := time.Now()
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	s := newServer(t, idempotency.Options{Lease: time.Minute, Now: func() time.Time { return *clock.Load() }})
	// A process claimed the key and died before it finished: its claim is all that is left.
	body := `{"a":1}`
	sum := sha256.Sum256([]byte("POST /things\n" + body))
	err := s.db.Exec(`INSERT INTO ficus_idempotency (scope, key, request_hash, state, created_at, locked_until)
		VALUES (?, ?, ?, 'in_flight', ?, ?)`, "POST /things", "k1", hex.EncodeToString(sum[:]), now, now.Add(time.Minute)).Error
	if err != nil {
		t.Fatal(err)
	}
	if st, _, b := post(t, s.url, "k1", body); st != 409 {
		t.Fatalf("within the lease: %d %s, want 409", st, b)
	}
	later := now.Add(2 * time.Minute)
	clock.Store(&later)
	st, _, b := post(t, s.url, "k1", body)
	if st != 201 || s.calls.Load() != 1 {
		t.Fatalf("after the lease: %d %s, calls %d", st, b, s.calls.Load())
	}
	if st, h, _ := post(t, s.url, "k1", body); st != 201 || h.Get(idempotency.ReplayedHeader) != "true" {
		t.Errorf("the taken-over request's response was not stored: %d", st)
	}
}

// TestEffectAndResponseCommitTogether: a handler that writes and then fails leaves nothing
// behind, and a handler that writes and succeeds has its write and its stored response.
func TestEffectAndResponseCommitTogether(t *testing.T) {
	s := newServer(t, idempotency.Options{})
	if err := s.db.Exec("CREATE TABLE effects (id TEXT PRIMARY KEY)").Error; err != nil {
		t.Fatal(err)
	}
	s.effect = func(ctx context.Context, id string) error {
		return store.Write(ctx, s.db, func(ctx context.Context, tx *gorm.DB) error {
			return tx.Exec("INSERT INTO effects (id) VALUES (?)", id).Error
		})
	}
	s.fail.Store(1)
	if st, _, _ := post(t, s.url, "k1", `{"a":1}`); st != 503 {
		t.Fatalf("first: %d", st)
	}
	var n int64
	s.db.Table("effects").Count(&n)
	if n != 0 {
		t.Fatalf("a failed request's write survived: %d rows", n)
	}
	if st, _, _ := post(t, s.url, "k1", `{"a":1}`); st != 201 {
		t.Fatalf("retry: %d", st)
	}
	post(t, s.url, "k1", `{"a":1}`)
	s.db.Table("effects").Count(&n)
	if n != 1 {
		t.Fatalf("effects = %d, want exactly 1", n)
	}
}

func TestBadKeyIs400(t *testing.T) {
	s := newServer(t, idempotency.Options{})
	st, _, b := post(t, s.url, strings.Repeat("k", 256), `{}`)
	if st != 400 || code(b) != "invalid_idempotency_key" {
		t.Fatalf("got %d %s", st, b)
	}
}
