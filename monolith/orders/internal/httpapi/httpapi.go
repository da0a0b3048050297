// Package httpapi serves the orders module's part of the shop's HTTP contract.
package httpapi

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/ficus-project/ficus/monolith/orders/internal/domain"
	"github.com/ficus-project/ficus/platform/fault"
	"github.com/ficus-project/ficus/platform/web"
)

// Service is what the handlers need of the module.
type Service interface {
	Place(ctx context.Context, p domain.PlaceOrder) (domain.Order, error)
	Order(ctx context.Context, id string) (domain.Order, error)
	ByCustomer(ctx context.Context, customerID string) ([]domain.Order, error)
	Cancel(ctx context.Context, id string) (domain.Order, error)
}

// Register adds the module's routes to g; idempotent guards the unsafe POST.
func Register(g *echo.Group, s Service, idempotent echo.MiddlewareFunc) {
	g.POST("/api/orders", place(s), idempotent)
	g.GET("/api/orders", list(s))
	g.GET("/api/orders/:id", get(s))
	g.POST("/api/orders/:id/cancel", cancel(s))
}

func place(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		var in domain.PlaceOrder
		if err := web.Bind(c, &in); err != nil {
			return err
		}
		out, err := s.Place(c.Request().Context(), in)
		if err != nil {
			return err
		}
		c.Response().Header().Set(echo.HeaderLocation, "/api/orders/"+out.ID)
		return c.JSON(http.StatusCreated, out)
	}
}

func list(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.QueryParam("customer_id")
		if id == "" {
			var f fault.Fields
			f.Check(false, "customer_id", "the query parameter is required")
			return f.Err()
		}
		out, err := s.ByCustomer(c.Request().Context(), id)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"orders": out})
	}
}

func get(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		out, err := s.Order(c.Request().Context(), c.Param("id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
}

func cancel(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		out, err := s.Cancel(c.Request().Context(), c.Param("id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
}
