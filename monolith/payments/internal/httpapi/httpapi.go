// Package httpapi serves the payments module's part of the shop's HTTP contract.
package httpapi

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/ficus-project/ficus/monolith/payments/internal/domain"
	"github.com/ficus-project/ficus/platform/web"
)

// Service is what the handlers need of the module.
type Service interface {
	Charge(ctx context.Context, ch domain.Charge) (domain.Payment, error)
	Payment(ctx context.Context, id string) (domain.Payment, error)
	Refund(ctx context.Context, id string) (domain.Payment, error)
}

// Register adds the module's routes to g; idempotent guards the unsafe POST.
func Register(g *echo.Group, s Service, idempotent echo.MiddlewareFunc) {
	g.POST("/api/payments", charge(s), idempotent)
	g.GET("/api/payments/:id", get(s))
	g.POST("/api/payments/:id/refund", refund(s))
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
