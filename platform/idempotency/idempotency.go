// Package idempotency makes unsafe POSTs safe to repeat with an Idempotency-Key header.
//
// In both of its modes a repeat with the same key and body gets the stored response
// (Idempotent-Replayed: true) and does nothing; the same key with another body is 422; a
// repeat while the first is still running is 409 idempotency_in_flight; a 5xx, or a panic,
// leaves the key free, so the client may retry. Keys are kept for a while, not for ever:
// PruneRule deletes a finished key a day (config's retention.idempotency) after its first
// request, and a repeat after that runs again, as a new request. The handler finds which
// keyed request it serves with RequestOf.
//
// Atomic (the default): the first request with a key claims it (state in_flight) in a
// platform table of the service's own database, in the same transaction as its handler and
// the recording of its response: the claim, the effect and the stored response commit
// together, so a crash cannot leave an effect without its response (a repeat would run the
// effect again) or a claim without a holder. A repeat running in another process waits for
// the first to commit, then gets its response. Because the handler runs inside the
// transaction, its writes must join the unit of work its request's context carries
// (store.Write and store.Conn do this), and it must not make remote calls: the transaction
// holds SQLite's write turn or PostgreSQL's row locks, and an HTTP client built on
// store.RefuseInTx refuses them. On PostgreSQL the handler may run again if the server
// aborts the transaction for a conflict (see store.Write).
//
// Claimed: for a handler that makes remote calls (the monolith's order saga). The claim
// commits on its own first; the handler runs outside any transaction; its response is then
// stored in a second one (or, after a 5xx, the claim deleted). A crash between the claim and
// the store leaves the claim in_flight: a repeat within Options.Lease gets 409
// idempotency_in_flight with Retry-After, and a repeat after it takes the claim over and
// runs the handler again. The handler must make that rerun safe: it is given the same
// Request (RequestOf) and must find and finish what the first run started rather than start
// it again. Any claim left in_flight is taken over the same way (one left by an Atomic
// middleware of an older version included).
package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/problem"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/web"
)

// Header is the request header that carries the key.
const Header = "Idempotency-Key"

// ReplayedHeader marks a response replayed from the store.
const ReplayedHeader = "Idempotent-Replayed"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates the key table in db.
func Migrate(ctx context.Context, db *gorm.DB) error {
	return store.Migrate(ctx, db, "idempotency", migrations, "migrations")
}

type keyRow struct {
	Scope       string `gorm:"primaryKey"`
	Key         string `gorm:"primaryKey"`
	RequestHash string
	State       string
	Status      int
	ContentType string
	Body        []byte
	CreatedAt   time.Time
	LockedUntil time.Time
}

const keyTable = "ficus_idempotency"

func (keyRow) TableName() string { return keyTable }

const (
	stateInFlight = "in_flight"
	stateDone     = "done"
)

// Mode says how the middleware ties a handler's work to its key.
type Mode int

const (
	// Atomic claims the key, runs the handler and stores its response in one unit of work.
	Atomic Mode = iota
	// Claimed commits the claim first, runs the handler outside any transaction, then
	// stores its response: for handlers that make remote calls, and are safe to run again
	// for the same Request after a crash.
	Claimed
)

// Options tune the middleware. The zero value is ready to use.
type Options struct {
	// Mode is Atomic (default) or Claimed.
	Mode Mode
	// Lease is how long a claim protects a request that has not finished; after it a repeat
	// may take the key over (its first holder is presumed dead). In Claimed mode it must
	// outlast the handler. Default 5m.
	Lease time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Request identifies a keyed request: its scope (method and route) and its key.
type Request struct {
	Scope, Key string
}

// ID is a fixed-size name for the request: a SHA-256 of its scope and key, in hex.
func (r Request) ID() string {
	sum := sha256.Sum256([]byte(r.Scope + "\x00" + r.Key))
	return hex.EncodeToString(sum[:])
}

type requestKey struct{}

// RequestOf returns the keyed request a handler serves, when the middleware passed it one.
func RequestOf(ctx context.Context) (Request, bool) {
	r, ok := ctx.Value(requestKey{}).(Request)
	return r, ok
}

// Middleware returns echo middleware storing keys in db.
func Middleware(db *gorm.DB, opts Options) echo.MiddlewareFunc {
	if opts.Lease == 0 {
		opts.Lease = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	running := &inFlight{keys: map[string]struct{}{}}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			key := c.Request().Header.Get(Header)
			if key == "" {
				return next(c)
			}
			if len(key) > 255 || !printable(key) {
				return problem.New(http.StatusBadRequest, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 printable ASCII characters")
			}
			body, err := web.ReadBody(c)
			if err != nil {
				return err
			}
			req := c.Request()
			scope := req.Method + " " + c.Path()
			h := sha256.New()
			h.Write([]byte(req.Method))
			h.Write([]byte(" "))
			h.Write([]byte(req.URL.Path))
			h.Write([]byte("\n"))
			h.Write(body)
			var sum [sha256.Size]byte
			hash := hex.EncodeToString(h.Sum(sum[:0]))

			// Atomic: look first, without the write lock: a repeat of a finished request gets
			// its response at once, and a repeat of one still running its 409, rather than
			// queueing behind the running request's transaction. (Claimed mode's claim is a
			// short transaction of its own, which decides on what is there: no look needed.)
			var row keyRow
			found := false
			if opts.Mode != Claimed {
				if row, found, err = lookup(req.Context(), db, scope, key); err != nil {
					return err
				}
			}
			if found {
				replay, takeover, err := decide(row, hash, opts.Now().UTC())
				if err != nil {
					return err
				}
				if !takeover {
					return writeReplay(c, replay)
				}
			}
			// A claim is not visible to other connections until it commits with the
			// response, so requests running in this process are also tracked here.
			id := scope + "\x00" + key
			if !running.add(id) {
				return errInFlight()
			}
			defer running.remove(id)
			if opts.Mode == Claimed {
				return runClaimed(c, next, db, opts, scope, key, hash, body)
			}
			return run(c, next, db, opts, scope, key, hash, body)
		}
	}
}

// inFlight is the set of keys whose requests are running in this process.
type inFlight struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

func (f *inFlight) add(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.keys[id]; ok {
		return false
	}
	f.keys[id] = struct{}{}
	return true
}

func (f *inFlight) remove(id string) {
	f.mu.Lock()
	delete(f.keys, id)
	f.mu.Unlock()
}

func writeReplay(c echo.Context, replay *keyRow) error {
	h := c.Response().Header()
	h.Set(ReplayedHeader, "true")
	if replay.ContentType != "" {
		h.Set(echo.HeaderContentType, replay.ContentType)
	}
	c.Response().WriteHeader(replay.Status)
	_, err := c.Response().Write(replay.Body)
	return err
}

// errRollback abandons the key's transaction after a 5xx.
var errRollback = errors.New("server error: rolling back")

// run claims the key and executes the handler inside the transaction that records its
// response, so the claim, the effect and the stored response commit together or not at all.
// The response is held until then: a client never sees a success that did not commit. A 5xx
// rolls everything back, which leaves the key free.
func run(c echo.Context, next echo.HandlerFunc, db *gorm.DB, opts Options, scope, key, hash string, body []byte) error {
	req := c.Request()
	// A fresh context from here on: a client that hangs up must not cut the transaction short.
	ctx := context.WithoutCancel(req.Context())
	orig := c.Response().Writer
	var buf *web.ResponseBuffer
	defer func() {
		if r := recover(); r != nil {
			// The transaction has rolled back, claim and all.
			c.Response().Writer = orig
			panic(r)
		}
	}()
	var replay *keyRow
	var refused error
	err := store.Write(ctx, db, func(txCtx context.Context, tx *gorm.DB) error {
		replay, refused = claim(txCtx, tx, opts, scope, key, hash)
		if refused != nil || replay != nil {
			return refused
		}
		// The transaction may run more than once (PostgreSQL retries one the server aborted
		// for a conflict): each attempt starts from a fresh response and a fresh body.
		buf = web.NewResponseBuffer()
		res := c.Response()
		res.Writer, res.Status, res.Size, res.Committed = buf, http.StatusOK, 0, false
		attempt := req.WithContext(context.WithValue(txCtx, requestKey{}, Request{Scope: scope, Key: key}))
		attempt.Body = io.NopCloser(bytes.NewReader(body))
		c.SetRequest(attempt)
		defer c.SetRequest(req)
		if err := tx.SavePoint("ficus_handler").Error; err != nil {
			return err
		}
		if herr := next(c); herr != nil {
			// The handler failed: undo what it wrote, then let the error handler write the
			// response, so it is recorded.
			if err := tx.RollbackTo("ficus_handler").Error; err != nil {
				return err
			}
			c.Error(herr)
		}
		status := c.Response().Status
		if status >= 500 || !c.Response().Committed {
			return errRollback
		}
		return tx.Exec(`UPDATE `+keyTable+` SET state = ?, status = ?, content_type = ?, body = ? WHERE scope = ? AND key = ?`,
			stateDone, status, buf.Header().Get(echo.HeaderContentType), buf.Body(), scope, key).Error
	})
	c.Response().Writer = orig
	if refused != nil {
		return refused
	}
	if err != nil {
		if !errors.Is(err, errRollback) {
			return fmt.Errorf("recording idempotent response: %w", err)
		}
	}
	if replay != nil {
		return writeReplay(c, replay)
	}
	return buf.Send(orig)
}

// runClaimed is the Claimed mode: the claim commits first, the handler runs outside any
// transaction, and its response is stored afterwards (or, after a 5xx or a panic, the claim
// deleted). The response is held until it is stored: a client never sees an answer a repeat
// could not replay.
func runClaimed(c echo.Context, next echo.HandlerFunc, db *gorm.DB, opts Options, scope, key, hash string, body []byte) error {
	req := c.Request()
	// A fresh context from here on: a client that hangs up must not leave its claim behind.
	ctx := context.WithoutCancel(req.Context())
	var replay *keyRow
	var refused error
	var until time.Time
	err := store.Write(ctx, db, func(txCtx context.Context, tx *gorm.DB) error {
		replay, until, refused = claimUntil(txCtx, tx, opts, scope, key, hash)
		return refused
	})
	if refused != nil {
		return refused
	}
	if err != nil {
		return fmt.Errorf("claiming idempotency key: %w", err)
	}
	if replay != nil {
		return writeReplay(c, replay)
	}
	release := func() {
		// Only this claim: after a takeover the key is another request's.
		if err := db.WithContext(ctx).Exec(`DELETE FROM `+keyTable+` WHERE scope = ? AND key = ? AND state = ? AND locked_until = ?`,
			scope, key, stateInFlight, until).Error; err != nil {
			c.Logger().Errorf("idempotency: releasing the claim of %s %q: %v", scope, key, err)
		}
	}
	orig := c.Response().Writer
	buf := web.NewResponseBuffer()
	res := c.Response()
	res.Writer, res.Status, res.Size, res.Committed = buf, http.StatusOK, 0, false
	attempt := req.WithContext(context.WithValue(ctx, requestKey{}, Request{Scope: scope, Key: key}))
	attempt.Body = io.NopCloser(bytes.NewReader(body))
	c.SetRequest(attempt)
	func() {
		defer func() {
			if r := recover(); r != nil {
				c.SetRequest(req)
				c.Response().Writer = orig
				release()
				panic(r)
			}
		}()
		if herr := next(c); herr != nil {
			c.Error(herr)
		}
	}()
	c.SetRequest(req)
	c.Response().Writer = orig
	status := c.Response().Status
	if status >= 500 || !c.Response().Committed {
		release()
	} else {
		err := store.Write(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
			return tx.Exec(`UPDATE `+keyTable+` SET state = ?, status = ?, content_type = ?, body = ? WHERE scope = ? AND key = ? AND state = ?`,
				stateDone, status, buf.Header().Get(echo.HeaderContentType), buf.Body(), scope, key, stateInFlight).Error
		})
		if err != nil {
			// The effect happened and its answer is not stored: a repeat after the lease
			// runs the handler again, which finds what this run did.
			return fmt.Errorf("recording idempotent response: %w", err)
		}
	}
	return buf.Send(orig)
}

// claim takes the key for this request in tx, or returns the stored response to replay, or
// the problem that refuses the request.
func claim(ctx context.Context, tx *gorm.DB, opts Options, scope, key, hash string) (*keyRow, error) {
	replay, _, err := claimUntil(ctx, tx, opts, scope, key, hash)
	return replay, err
}

// claimUntil is claim, and also returns the claim's locked_until, which identifies it.
func claimUntil(ctx context.Context, tx *gorm.DB, opts Options, scope, key, hash string) (*keyRow, time.Time, error) {
	now := opts.Now().UTC()
	// Microseconds: PostgreSQL keeps no more, and the value must compare equal when read back.
	until := now.Add(opts.Lease).Truncate(time.Microsecond)
	res := tx.Exec(`INSERT INTO `+keyTable+` (scope, key, request_hash, state, created_at, locked_until)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, scope, key, hash, stateInFlight, now, until)
	if res.Error != nil {
		return nil, until, fmt.Errorf("claiming idempotency key: %w", res.Error)
	}
	if res.RowsAffected == 1 {
		return nil, until, nil
	}
	// The key was claimed since the look: decide again on what is there.
	row, _, err := lookup(ctx, tx, scope, key)
	if err != nil {
		return nil, until, err
	}
	replay, takeover, err := decide(row, hash, now)
	if err != nil || !takeover {
		return replay, until, err
	}
	// Take the abandoned claim over, unless another request took it meanwhile.
	res = tx.Exec(`UPDATE `+keyTable+` SET locked_until = ? WHERE scope = ? AND key = ? AND state = ? AND locked_until = ?`,
		until, scope, key, stateInFlight, row.LockedUntil)
	if res.Error != nil {
		return nil, until, fmt.Errorf("claiming idempotency key: %w", res.Error)
	}
	if res.RowsAffected != 1 {
		return nil, until, errInFlight()
	}
	return nil, until, nil
}

func errInFlight() error {
	p := problem.New(http.StatusConflict, "idempotency_in_flight",
		"a request with this Idempotency-Key is still in progress")
	p.RetryAfter = 1
	return p
}

func lookup(ctx context.Context, db *gorm.DB, scope, key string) (keyRow, bool, error) {
	var row keyRow
	err := db.WithContext(ctx).Where("scope = ? AND key = ?", scope, key).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return keyRow{}, false, nil
	}
	if err != nil {
		return keyRow{}, false, fmt.Errorf("reading idempotency key: %w", err)
	}
	return row, true, nil
}

// decide says what an existing key means for a request with body hash: a response to replay,
// a problem, or (takeover) an abandoned claim the request may take over.
func decide(row keyRow, hash string, now time.Time) (replay *keyRow, takeover bool, err error) {
	switch {
	case row.RequestHash != hash:
		return nil, false, problem.New(http.StatusUnprocessableEntity, "idempotency_key_reused",
			"this Idempotency-Key was used with a different request")
	case row.State == stateDone:
		return &row, false, nil
	case now.Before(row.LockedUntil):
		return nil, false, errInFlight()
	}
	return nil, true, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
