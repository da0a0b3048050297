// Package web is the HTTP plumbing the monolith and the extracted services share: an echo
// server with the one error handler that maps domain errors to problem+json, the strict JSON
// decoder every handler uses, cursor pagination, health endpoints, request logging, and the
// http.Server every Ficus server runs (time and size limits on what a client sends).
package web

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ficus-project/ficus/platform/fault"
	"github.com/ficus-project/ficus/platform/problem"
)

// New returns an echo server with Ficus's error handler, panic recovery, request ids and
// access logging, and /healthz and /readyz.
func New(logger *slog.Logger, ready func() error) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(logger)
	e.Use(requestID, recoverer(logger))
	if logger != nil {
		e.Use(accessLog(logger))
	}
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", func(c echo.Context) error {
		if ready != nil {
			if err := ready(); err != nil {
				p := problem.New(http.StatusServiceUnavailable, "not_ready", err.Error())
				problem.Write(c.Response(), c.Request(), p)
				return nil
			}
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
	})
	return e
}

// ToProblem maps an error to its problem document: the one place where error kinds become
// HTTP statuses.
func ToProblem(err error) *problem.Problem {
	var p *problem.Problem
	if errors.As(err, &p) {
		return p
	}
	if fe, ok := fault.As(err); ok {
		status := map[fault.Kind]int{
			fault.Invalid:       http.StatusBadRequest,
			fault.NotFound:      http.StatusNotFound,
			fault.Conflict:      http.StatusConflict,
			fault.Declined:      http.StatusPaymentRequired,
			fault.Unprocessable: http.StatusUnprocessableEntity,
			fault.Unavailable:   http.StatusServiceUnavailable,
		}[fe.Kind]
		if status == 0 {
			status = http.StatusInternalServerError
		}
		p := problem.New(status, fe.Code, fe.Msg)
		for _, f := range fe.Fields {
			p.Errors = append(p.Errors, problem.FieldError{Field: f.Name, Message: f.Msg})
		}
		if fe.Kind == fault.Unavailable {
			p.RetryAfter = 1
		}
		return p
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code := map[int]string{
			http.StatusNotFound:              "not_found",
			http.StatusMethodNotAllowed:      "method_not_allowed",
			http.StatusRequestEntityTooLarge: "body_too_large",
			http.StatusUnsupportedMediaType:  "unsupported_media_type",
			http.StatusBadRequest:            "invalid_request",
			http.StatusRequestTimeout:        "body_timeout",
		}[he.Code]
		if code == "" {
			code = "http_error"
		}
		return problem.New(he.Code, code, fmt.Sprint(he.Message))
	}
	return problem.New(http.StatusInternalServerError, "internal", "internal error")
}

func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		p := ToProblem(err)
		if p.Status >= 500 && logger != nil {
			logger.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path,
				"request_id", c.Request().Header.Get(echo.HeaderXRequestID), "err", err)
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(p.Status)
			return
		}
		problem.Write(c.Response(), c.Request(), p)
	}
}

// requestID gives every request an X-Request-Id (the caller's, or a new one) and echoes it
// in the response. Logs read it from the request: a middleware may swap the response writer
// (the idempotency middleware buffers the response until its transaction commits), and
// headers set on the swapped-out writer are not where a log line would look.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		id := r.Header.Get(echo.HeaderXRequestID)
		if id == "" {
			id = rand.Text()
			r.Header.Set(echo.HeaderXRequestID, id)
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

func recoverer(logger *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler {
						panic(r)
					}
					if logger != nil {
						logger.Error("panic", "path", c.Request().URL.Path, "panic", r)
					}
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			return next(c)
		}
	}
}

func accessLog(logger *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			if logger.Enabled(c.Request().Context(), slog.LevelDebug) {
				logger.Debug("request", "method", c.Request().Method, "path", c.Request().URL.Path,
					"status", c.Response().Status, "duration", time.Since(start),
					"request_id", c.Request().Header.Get(echo.HeaderXRequestID))
			}
			return nil
		}
	}
}
