package idempotency_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// claimedServer is a server whose handler runs in Claimed mode, as the monolith's order saga
// does: it records whether it ran inside a transaction and which keyed request it served.
type claimedServer struct {
	db       *gorm.DB
	url      string
	calls    atomic.Int64
	inTx     atomic.Bool
	mu       sync.Mutex
	requests []idempotency.Request
	// answer, when set, decides the handler's answer.
	answer func(c echo.Context) error
}

func newClaimedServer(t *testing.T, db *gorm.DB, opts idempotency.Options) *claimedServer {
	t.Helper()
	opts.Mode = idempotency.Claimed
	s := &claimedServer{db: db}
	e := web.New(nil, nil)
	e.POST("/things", func(c echo.Context) error {
		n := s.calls.Add(1)
		ctx := c.Request().Context()
		if store.InTx(ctx) {
			s.inTx.Store(true)
		}
		if r, ok := idempotency.RequestOf(ctx); ok {
			s.mu.Lock()
			s.requests = append(s.requests, r)
			s.mu.Unlock()
		}
		if s.answer != nil {
			return s.answer(c)
		}
		return c.JSON(http.StatusCreated, map[string]any{"call": n})
	}, idempotency.Middleware(db, opts))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func claimedDB(t *testing.T) *gorm.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, storetest.DSN(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	if err := idempotency.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	return db
}

func keyState(t *testing.T, db *gorm.DB, key string) string {
	t.Helper()
	var states []string
	if err := db.Table("ficus_idempotency").Where("key = ?", key).Pluck("state", &states).Error; err != nil {
		t.Fatal(err)
	}
	if len(states) == 0 {
		return "none"
	}
	return states[0]
}

// TestClaimedRunsTheHandlerOutsideATransaction: in Claimed mode the handler holds no write
// transaction (it may make remote calls), knows the keyed request it serves, and its answer
// is stored and replayed as in the default mode.
func TestClaimedRunsTheHandlerOutsideATransaction(t *testing.T) {
	s := newClaimedServer(t, claimedDB(t), idempotency.Options{})
	st1, _, b1 := post(t, s.url, "k1", `{"a":1}`)
	st2, h2, b2 := post(t, s.url, "k1", `{"a":1}`)
	if st1 != 201 || st2 != 201 || b1 != b2 || h2.Get(idempotency.ReplayedHeader) != "true" {
		t.Fatalf("repeat: %d %s / %d %s", st1, b1, st2, b2)
	}
	if s.inTx.Load() {
		t.Error("the handler ran inside a transaction")
	}
	if s.calls.Load() != 1 || len(s.requests) != 1 || s.requests[0] != (idempotency.Request{Scope: "POST /things", Key: "k1"}) {
		t.Errorf("calls %d, requests %+v", s.calls.Load(), s.requests)
	}
	if st, _, b := post(t, s.url, "k1", `{"a":2}`); st != 422 || code(b) != "idempotency_key_reused" {
		t.Errorf("another body: %d %s", st, b)
	}
	if got := keyState(t, s.db, "k1"); got != "done" {
		t.Errorf("key state %s, want done", got)
	}
}

// TestClaimedServerErrorAndPanicFreeTheKey: a 5xx answer, or a handler that panics, deletes
// the claim, so the client's retry runs again.
func TestClaimedServerErrorAndPanicFreeTheKey(t *testing.T) {
	s := newClaimedServer(t, claimedDB(t), idempotency.Options{})
	s.answer = func(echo.Context) error { return echo.NewHTTPError(http.StatusServiceUnavailable, "later") }
	if st, _, _ := post(t, s.url, "k1", `{}`); st != 503 {
		t.Fatalf("first: %d", st)
	}
	if got := keyState(t, s.db, "k1"); got != "none" {
		t.Fatalf("after a 5xx the key is %s, want free", got)
	}
	s.answer = func(echo.Context) error { panic("boom") }
	if st, _, _ := post(t, s.url, "k1", `{}`); st != 500 {
		t.Fatalf("a panic: %d, want 500", st)
	}
	if got := keyState(t, s.db, "k1"); got != "none" {
		t.Fatalf("after a panic the key is %s, want free", got)
	}
	s.answer = nil
	if st, h, _ := post(t, s.url, "k1", `{}`); st != 201 || h.Get(idempotency.ReplayedHeader) != "" || s.calls.Load() != 3 {
		t.Fatalf("the retry: %d, replayed %q, calls %d; want it run", st, h.Get(idempotency.ReplayedHeader), s.calls.Load())
	}
}

// TestClaimedCrashBetweenClaimAndStore: a process that claimed the key and died before it
// stored the answer leaves its claim. Another process answers a repeat 409 (Retry-After) while
// the claim's lease runs, then takes the claim over and runs the handler again, for the same
// request (which the handler uses to find what the first run did).
func TestClaimedCrashBetweenClaimAndStore(t *testing.T) {
	db := claimedDB(t)
	now := time.Now().UTC()
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	opts := idempotency.Options{Lease: 10 * time.Second, Now: func() time.Time { return *clock.Load() }}
	// The first process: claims, then dies in the handler.
	entered, die := make(chan struct{}), make(chan struct{})
	first := newClaimedServer(t, db, opts)
	first.answer = func(echo.Context) error {
		close(entered)
		<-die
		panic(http.ErrAbortHandler) // as if the process were gone: nothing answered, nothing cleaned up by the handler
	}
	firstDone := make(chan struct{})
	go func() {
		defer close(firstDone)
		_, _, _ = postNoFail(first.url, "k1", `{"a":1}`)
	}()
	<-entered
	if got := keyState(t, db, "k1"); got != "in_flight" {
		t.Fatalf("while the first request runs its key is %s, want a committed in_flight claim", got)
	}
	second := newClaimedServer(t, db, opts)
	st, h, b := post(t, second.url, "k1", `{"a":1}`)
	if st != 409 || code(b) != "idempotency_in_flight" || h.Get("Retry-After") == "" {
		t.Fatalf("a repeat within the lease: %d %s, want 409 idempotency_in_flight with Retry-After", st, b)
	}
	later := now.Add(11 * time.Second)
	clock.Store(&later)
	// The rerun takes the claim over; while it runs, the dead process's late cleanup (its
	// panic) must not free the key the rerun now holds.
	rerunning, finish := make(chan struct{}), make(chan struct{})
	second.answer = func(c echo.Context) error {
		close(rerunning)
		<-finish
		return c.JSON(http.StatusCreated, map[string]any{"rerun": true})
	}
	rerun := make(chan int, 1)
	go func() {
		st, _, _ := postNoFail(second.url, "k1", `{"a":1}`)
		rerun <- st
	}()
	<-rerunning
	close(die)
	select {
	case <-firstDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request never ended")
	}
	close(finish)
	if st := <-rerun; st != 201 || second.calls.Load() != 1 {
		t.Fatalf("a repeat after the lease: %d, calls %d; want the handler run again", st, second.calls.Load())
	}
	if len(second.requests) != 1 || second.requests[0] != (idempotency.Request{Scope: "POST /things", Key: "k1"}) {
		t.Errorf("the rerun served %+v, want the same request", second.requests)
	}
	if st, h, b := post(t, second.url, "k1", `{"a":1}`); st != 201 || h.Get(idempotency.ReplayedHeader) != "true" || b != `{"rerun":true}`+"\n" {
		t.Errorf("after the takeover the rerun's answer is not replayed: %d %s", st, b)
	}
}

// postNoFail is post for a goroutine: it reports errors instead of failing the test.
func postNoFail(url, key, body string) (int, string, error) {
	req, _ := http.NewRequest("POST", url+"/things", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(idempotency.Header, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	resp.Body.Close()
	return resp.StatusCode, "", nil
}
