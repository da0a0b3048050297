// Package httpapi serves the customers module's part of the shop's HTTP contract.
package httpapi

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/ficus-project/ficus/monolith/customers/internal/domain"
	"github.com/ficus-project/ficus/platform/web"
)

// Service is what the handlers need of the module.
type Service interface {
	Create(ctx context.Context, n domain.NewCustomer) (domain.Customer, error)
	Get(ctx context.Context, id string) (domain.Customer, error)
	SetCreditLimit(ctx context.Context, id string, cents int64) (domain.Customer, error)
}

// Register adds the module's routes to g.
func Register(g *echo.Group, s Service) {
	g.POST("/api/customers", create(s))
	g.GET("/api/customers/:id", get(s))
	g.PUT("/api/customers/:id/credit-limit", setCreditLimit(s))
}

func create(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		var in domain.NewCustomer
		if err := web.Bind(c, &in); err != nil {
			return err
		}
		out, err := s.Create(c.Request().Context(), in)
		if err != nil {
			return err
		}
		c.Response().Header().Set(echo.HeaderLocation, "/api/customers/"+out.ID)
		return c.JSON(http.StatusCreated, out)
	}
}

func get(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		out, err := s.Get(c.Request().Context(), c.Param("id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
}

func setCreditLimit(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		var in domain.CreditLimit
		if err := web.Bind(c, &in); err != nil {
			return err
		}
		if err := in.Validate(); err != nil {
			return err
		}
		out, err := s.SetCreditLimit(c.Request().Context(), c.Param("id"), *in.CreditLimitCents)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
}
