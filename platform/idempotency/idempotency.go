// Package idempotency makes unsafe POSTs safe to repeat with an Idempotency-Key header.
//
// The first request with a key claims it (state in_flight) in a platform table of the
// service's own database, runs, and stores its response. A repeat with the same key and body
// gets the stored response and does nothing; the same key with another body is 422; a repeat
// while the first is still running is 409. A 5xx, or a panic, releases the key so the client
// may retry. A claim whose holder died is taken over after Options.Lease.
package idempotency

import (
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

			rec := &recorder{ResponseWriter: c.Response().Writer}
			c.Response().Writer = rec
			released := false
			release := func() {
				if !released {
					released = true
					// A fresh context: the request's may be cancelled, and the key must go.
					_ = store.InTx(context.WithoutCancel(ctx), db, func(_ context.Context, tx *gorm.DB) error {
						return tx.Where("scope = ? AND key = ?", scope, key).Delete(&keyRow{}).Error
					})
				}
			}
			defer func() {
				if r := recover(); r != nil {
					release()
					panic(r)
				}
			}()
			herr := next(c)
			if herr != nil {
				// Let the error handler write the response now, so it is recorded.
				c.Error(herr)
			}
			status := c.Response().Status
			if status >= 500 || !c.Response().Committed {
				release()
				return nil
			}
			err = store.InTx(context.WithoutCancel(ctx), db, func(_ context.Context, tx *gorm.DB) error {
				return tx.Model(&keyRow{}).Where("scope = ? AND key = ?", scope, key).
					Updates(map[string]any{"state": stateDone, "status": status,
						"content_type": c.Response().Header().Get(echo.HeaderContentType), "body": rec.body}).Error
			})
			if err != nil {
				return fmt.Errorf("storing idempotent response: %w", err)
			}
			return nil
		}
	}
}

// claim takes the key for this request, or returns the stored response to replay, or the
// problem that refuses the request.
func claim(ctx context.Context, db *gorm.DB, opts Options, scope, key, hash string) (*keyRow, error) {
	now := opts.Now().UTC()
	var replay *keyRow
	err := store.InTx(ctx, db, func(ctx context.Context, tx *gorm.DB) error {
		var row keyRow
		err := tx.Where("scope = ? AND key = ?", scope, key).Take(&row).Error
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			return tx.Create(&keyRow{Scope: scope, Key: key, RequestHash: hash, State: stateInFlight,
				CreatedAt: now, LockedUntil: now.Add(opts.Lease)}).Error
		case err != nil:
			return err
		case row.RequestHash != hash:
			return problem.New(http.StatusUnprocessableEntity, "idempotency_key_reused",
				"this Idempotency-Key was used with a different request")
		case row.State == stateDone:
			replay = &row
			return nil
		case now.Before(row.LockedUntil):
			p := problem.New(http.StatusConflict, "idempotency_in_flight",
				"a request with this Idempotency-Key is still in progress")
			p.RetryAfter = 1
			return p
		default:
			return tx.Model(&keyRow{}).Where("scope = ? AND key = ?", scope, key).
				Update("locked_until", now.Add(opts.Lease)).Error
		}
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

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// recorder copies the response body as it is written.
type recorder struct {
	http.ResponseWriter
	body []byte
}

func (r *recorder) Write(b []byte) (int, error) {
	r.body = append(r.body, b...)
	return r.ResponseWriter.Write(b)
}
