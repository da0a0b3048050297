// Package web is the HTTP plumbing the monolith and the extracted services share: an echo
// server with the one error handler that maps domain errors to problem+json, strict JSON
// binding, health endpoints and request logging.
package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ficus-project/ficus/platform/fault"
	"github.com/ficus-project/ficus/platform/problem"
)

// MaxBody is the largest request body accepted (1 MiB).
const MaxBody = 1 << 20

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
			fault.Invalid:     http.StatusBadRequest,
			fault.NotFound:    http.StatusNotFound,
			fault.Conflict:    http.StatusConflict,
			fault.Declined:    http.StatusPaymentRequired,
			fault.Unavailable: http.StatusServiceUnavailable,
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
				"request_id", c.Response().Header().Get(echo.HeaderXRequestID), "err", err)
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(p.Status)
			return
		}
		problem.Write(c.Response(), c.Request(), p)
	}
}

// Bind decodes the request's JSON body into v strictly: the content type must be JSON (415),
// the body at most MaxBody (413), well-formed, with no unknown fields and nothing after the
// value (400).
func Bind(c echo.Context, v any) error {
	r := c.Request()
	ct := r.Header.Get(echo.HeaderContentType)
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return problem.New(http.StatusUnsupportedMediaType, "unsupported_media_type",
			fmt.Sprintf("want Content-Type application/json, got %q", ct))
	}
	body, err := ReadBody(c)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidJSON(err)
	}
	if dec.More() {
		return problem.New(http.StatusBadRequest, "malformed_json", "unexpected data after the JSON value")
	}
	return nil
}

// ReadBody reads the whole request body (at most MaxBody, else 413) and leaves a fresh copy
// in the request for whoever reads it next.
func ReadBody(c echo.Context) ([]byte, error) {
	r := c.Request()
	tooLarge := problem.New(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body is over %d bytes", MaxBody))
	if r.ContentLength > MaxBody {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		return nil, problem.New(http.StatusBadRequest, "unreadable_body", err.Error())
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

func invalidJSON(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return problem.New(http.StatusBadRequest, "malformed_json", fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se))
	case errors.As(err, &te):
		p := problem.New(http.StatusBadRequest, "invalid_request", "a field has the wrong type")
		field := te.Field
		if field == "" {
			field = "(body)"
		}
		p.Errors = []problem.FieldError{{Field: field, Message: fmt.Sprintf("want %s, got JSON %s", te.Type, te.Value)}}
		return p
	case errors.Is(err, io.EOF):
		return problem.New(http.StatusBadRequest, "malformed_json", "the body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem.New(http.StatusBadRequest, "malformed_json", "the JSON ends early")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		p := problem.New(http.StatusBadRequest, "invalid_request", "unknown field")
		p.Errors = []problem.FieldError{{Field: name, Message: "unknown field"}}
		return p
	}
	return problem.New(http.StatusBadRequest, "malformed_json", err.Error())
}

func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if id != "" {
			c.Response().Header().Set(echo.HeaderXRequestID, id)
		}
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
					"request_id", c.Response().Header().Get(echo.HeaderXRequestID))
			}
			return nil
		}
	}
}
