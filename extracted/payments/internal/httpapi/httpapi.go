// Package httpapi serves the payments service's part of the shop's HTTP contract.
package httpapi

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/ficus-project/ficus/extracted/payments/internal/domain"
	"github.com/ficus-project/ficus/platform/web"
)

// Service is what the handlers need of the service.
type Service interface {
	Charge(ctx context.Context, ch domain.Charge) (domain.Payment, error)
	Payment(ctx context.Context, id string) (domain.Payment, error)
	Refund(ctx context.Context, id string) (domain.Payment, error)
	AwaitCustomer(ctx context.Context, customerID string) error
}

// Register adds the service's routes to g; idempotent guards the unsafe POST, and dryRun
// honours the facade's dry-run header on the unsafe routes. A charge first waits, outside
// the units of work of both, for the service's copy of its customer (awaitCustomer).
func Register(g *echo.Group, s Service, idempotent, dryRun echo.MiddlewareFunc) {
	g.POST("/api/payments", charge(s), awaitCustomer(s), dryRun, idempotent)
	g.GET("/api/payments/:id", get(s), dryRun)
	g.POST("/api/payments/:id/refund", refund(s), dryRun)
}

// awaitCustomer holds a well-formed charge until the service's copy of the customers has its
// customer, or is caught up without it (Service.AwaitCustomer), and answers 503
// customer_not_yet_known when the copy stays behind. It runs before the idempotency
// middleware, whose unit of work holds the database's write turn (SQLite) and must not
// wait on the bus; a 503 here claims no key. Requests the handler will refuse (wrong
// content type, a body that does not decode or validate) go straight on, so they are
// answered as the monolith answers them.
func awaitCustomer(s Service) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !web.IsJSON(c.Request().Header.Get(echo.HeaderContentType)) {
				return next(c)
			}
			body, err := web.ReadBody(c) // leaves a fresh copy for the handler
			if err != nil {
				return err
			}
			var in domain.Charge
			if web.Decode(body, &in) != nil || in.Validate() != nil {
				return next(c)
			}
			if err := s.AwaitCustomer(c.Request().Context(), in.CustomerID); err != nil {
				return err
			}
			return next(c)
		}
	}
}

func charge(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		var in domain.Charge
		if err := web.Bind(c, &in); err != nil {
			return err
		}
		out, err := s.Charge(c.Request().Context(), in)
		if err != nil {
			return err
		}
		c.Response().Header().Set(echo.HeaderLocation, "/api/payments/"+out.ID)
		return c.JSON(http.StatusCreated, out.Wire())
	}
}

func get(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		out, err := s.Payment(c.Request().Context(), c.Param("id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out.Wire())
	}
}

func refund(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		out, err := s.Refund(c.Request().Context(), c.Param("id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out.Wire())
	}
}
