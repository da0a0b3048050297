// Package idempotency makes unsafe POSTs safe to repeat with an Idempotency-Key header.
//
// The first request with a key claims it (state in_flight) in a platform table of the
// service's own database. The handler then runs inside one transaction with the recording of
// its response, so the effect and the stored response commit together: a crash between the
// two cannot make a repeat run the effect again. A repeat with the same key and body gets the
// stored response and does nothing; the same key with another body is 422; a repeat while the
// first is still running is 409. A 5xx, or a panic, rolls the effect back and releases the
// key so the client may retry. A claim whose holder died is taken over after Options.Lease.
//
// Because the handler runs inside the transaction, its writes must go through the store's
// context-carried transaction (store.InTx and store.Conn do this), and it should not make
// slow remote calls: on SQLite the transaction holds the database's write lock.
package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

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
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	return store.Migrate(ctx, db, "idempotency", sub)
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

func (keyRow) TableName() string { return "ficus_idempotency" }

const (
	stateInFlight = "in_flight"
	stateDone     = "done"
)

// Options tune the middleware. The zero value is ready to use.
type Options struct {
	// Lease is how long a claim protects a request that has not finished; after it a repeat
	// may take the key over (its first holder is presumed dead). Default 5m.
	Lease time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Middleware returns echo middleware storing keys in db.
func Middleware(db *gorm.DB, opts Options) echo.MiddlewareFunc {
	if opts.Lease == 0 {
		opts.Lease = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
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
			sum := sha256.Sum256(append([]byte(req.Method+" "+req.URL.Path+"\n"), body...))
			hash := hex.EncodeToString(sum[:])
			ctx := req.Context()

			replay, err := claim(ctx, db, opts, scope, key, hash)
			if err != nil {
				return err
			}
			if replay != nil {
				h := c.Response().Header()
				h.Set(ReplayedHeader, "true")
				if replay.ContentType != "" {
					h.Set(echo.HeaderContentType, replay.ContentType)
				}
				c.Response().WriteHeader(replay.Status)
				_, err := c.Response().Write(replay.Body)
				return err
			}

			return run(c, next, db, scope, key)
		}
	}
}

// errRollback abandons the key's transaction after a 5xx.
var errRollback = errors.New("server error: rolling back")

// run executes the handler inside the transaction that records its response, so the effect
// and the stored response commit together or not at all. The response is held until then: a
// client never sees a success that did not commit. A 5xx rolls the effect back and releases
// the key.
func run(c echo.Context, next echo.HandlerFunc, db *gorm.DB, scope, key string) error {
	req := c.Request()
	// A fresh context from here on: a client that hangs up must not leave a claim behind.
	ctx := context.WithoutCancel(req.Context())
	orig := c.Response().Writer
	buf := &bufferedWriter{header: http.Header{}}
	c.Response().Writer = buf
	release := func() {
		_ = store.InTx(ctx, db, func(_ context.Context, tx *gorm.DB) error {
			return tx.Where("scope = ? AND key = ?", scope, key).Delete(&keyRow{}).Error
		})
	}
	defer func() {
		if r := recover(); r != nil {
			c.Response().Writer = orig
			release()
			panic(r)
		}
	}()
	err := store.InTx(ctx, db, func(txCtx context.Context, tx *gorm.DB) error {
		c.SetRequest(req.WithContext(txCtx))
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
		return tx.Model(&keyRow{}).Where("scope = ? AND key = ?", scope, key).
			Updates(map[string]any{"state": stateDone, "status": status,
				"content_type": buf.header.Get(echo.HeaderContentType), "body": buf.body.Bytes()}).Error
	})
	c.Response().Writer = orig
	if err != nil {
		release()
		if !errors.Is(err, errRollback) {
			return fmt.Errorf("recording idempotent response: %w", err)
		}
	}
	for k, v := range buf.header {
		orig.Header()[k] = v
	}
	status := buf.status
	if status == 0 {
		status = http.StatusOK
	}
	orig.WriteHeader(status)
	_, werr := orig.Write(buf.body.Bytes())
	return werr
}

// claim takes the key for this request, or returns the stored response to replay, or the
// problem that refuses the request.
func claim(ctx context.Context, db *gorm.DB, opts Options, scope, key, hash string) (*keyRow, error) {
	now := opts.Now().UTC()
	// Look first, without the write lock: a repeat of a request that is still running must
	// get its 409 at once, not queue behind the running request's transaction.
	row, found, err := lookup(ctx, db, scope, key)
	if err != nil {
		return nil, err
	}
	if found {
		replay, takeover, err := decide(row, hash, now)
		if err != nil || !takeover {
			return replay, err
		}
	}
	var replay *keyRow
	err = store.InTx(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&keyRow{Scope: scope, Key: key,
			RequestHash: hash, State: stateInFlight, CreatedAt: now, LockedUntil: now.Add(opts.Lease)})
		if res.Error != nil || res.RowsAffected == 1 {
			return res.Error
		}
		// Another request claimed the key since the look: decide again on what it wrote.
		row, _, err := lookup(ctx, tx, scope, key)
		if err != nil {
			return err
		}
		r, takeover, err := decide(row, hash, now)
		if err != nil || !takeover {
			replay = r
			return err
		}
		return tx.Model(&keyRow{}).Where("scope = ? AND key = ?", scope, key).
			Update("locked_until", now.Add(opts.Lease)).Error
	})
	if err != nil {
		var p *problem.Problem
		if errors.As(err, &p) {
			return nil, p
		}
		return nil, fmt.Errorf("claiming idempotency key: %w", err)
	}
	return replay, nil
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
		p := problem.New(http.StatusConflict, "idempotency_in_flight",
			"a request with this Idempotency-Key is still in progress")
		p.RetryAfter = 1
		return nil, false, p
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

// bufferedWriter holds a response until its transaction has committed.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *bufferedWriter) Header() http.Header { return w.header }

func (w *bufferedWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *bufferedWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}
