package dryrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/problem"
	"github.com/ficus-project/ficus/platform/store"
	"github.com/ficus-project/ficus/platform/web"
)

// errRolledBack ends a dry run's unit of work: returned from it, it rolls the work back.
var errRolledBack = errors.New("dry run: rolling back")

// Middleware honours the facade's dry-run header on the routes it guards. A request without
// the header passes untouched. One whose header v cannot verify is refused with 403
// dry_run_refused, and nothing runs: it never runs for real instead. A verified request with
// an unsafe method runs whole — later middleware (idempotency) and the handler — inside one
// unit of work on db, which every write and read of the request joins (store.Write,
// store.Conn), and which is then rolled back: no row, outbox event or idempotency key is
// left, and no commit hook runs. Its answer is held until then and sent with Ficus-Dry-Run:
// rolled-back. A verified safe request just runs, with the same answer header.
//
// Put it after anything that waits (the payments service's wait for its customer copy): the
// unit of work holds SQLite's write turn, or PostgreSQL's row locks, while it runs.
func Middleware(db *gorm.DB, v *Verifier) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			value := req.Header.Get(Header)
			if value == "" {
				return next(c)
			}
			if err := v.Verify(req.Method, req.URL.Path, value); err != nil {
				return problem.New(http.StatusForbidden, "dry_run_refused",
					"the "+Header+" header is only for the facade's shadow traffic, and this one was refused: "+err.Error())
			}
			if config.SafeMethod(req.Method) {
				c.Response().Header().Set(Header, Done)
				return next(c)
			}
			return rollBack(c, next, db)
		}
	}
}

// rollBack runs next inside a unit of work that it rolls back, then sends the answer next
// gave.
func rollBack(c echo.Context, next echo.HandlerFunc, db *gorm.DB) (err error) {
	req := c.Request()
	body, err := web.ReadBody(c)
	if err != nil {
		return err
	}
	// A client that hangs up must not cut the unit of work short half-way.
	ctx := context.WithoutCancel(req.Context())
	res := c.Response()
	orig := res.Writer
	defer func() {
		res.Writer = orig
		c.SetRequest(req)
	}()
	var buf *web.ResponseBuffer
	err = store.Write(ctx, db, func(txCtx context.Context, tx *gorm.DB) error {
		// The unit may run more than once (PostgreSQL retries one the server aborted for a
		// conflict): each attempt starts from a fresh answer and a fresh body.
		buf = web.NewResponseBuffer()
		res.Writer, res.Status, res.Size, res.Committed = buf, http.StatusOK, 0, false
		attempt := req.WithContext(txCtx)
		attempt.Body = io.NopCloser(bytes.NewReader(body))
		c.SetRequest(attempt)
		if herr := next(c); herr != nil {
			c.Error(herr) // the answer is written into buf, under the unit of work
		}
		return errRolledBack
	})
	if !errors.Is(err, errRolledBack) {
		return fmt.Errorf("dry run of %s %s: %w", req.Method, req.URL.Path, err)
	}
	res.Writer, res.Committed, res.Size = orig, false, 0
	buf.Header().Set(Header, Done)
	return buf.Send(res)
}
