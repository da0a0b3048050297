// Package httpapi serves the customers module's part of the shop's HTTP contract.
package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/ficus-project/ficus/monolith/customers/internal/domain"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/fault"
	"github.com/ficus-project/ficus/platform/web"
)

// Service is what the handlers need of the module.
type Service interface {
	Create(ctx context.Context, n domain.NewCustomer) (domain.Customer, error)
	Get(ctx context.Context, id string) (domain.Customer, error)
	ByEmail(ctx context.Context, email string) (domain.Customer, error)
	List(ctx context.Context, afterID string, limit int) ([]domain.Customer, error)
	SetCreditLimit(ctx context.Context, id string, cents int64) (domain.Customer, error)
}

// Register adds the module's routes to g.
func Register(g *echo.Group, s Service) {
	g.GET("/api/customers", list(s))
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
		return c.JSON(http.StatusCreated, out.Wire())
	}
}

// list pages through customers by id, or finds the one with an email: the lookup a
// newcomer uses to find the demo customers.
func list(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		page, err := web.ParsePage(c, contract.DefaultPageLimit, contract.MaxPageLimit, 1)
		if err != nil {
			return err
		}
		ctx := c.Request().Context()
		out := contract.CustomerList{Customers: []contract.Customer{}}
		if c.QueryParams().Has("email") {
			email := c.QueryParam("email")
			var f fault.Fields
			f.Check(email != "" && len(email) <= 254, "email", "must be 1 to 254 characters")
			if err := f.Err(); err != nil {
				return err
			}
			cust, err := s.ByEmail(ctx, email)
			switch {
			case errors.Is(err, domain.ErrNotFound):
			case err != nil:
				return err
			case page.After == nil || cust.ID > page.After[0]:
				out.Customers = append(out.Customers, cust.Wire())
			}
			return c.JSON(http.StatusOK, out)
		}
		after := ""
		if page.After != nil {
			after = page.After[0]
		}
		// One more than the page holds says whether there is a next page.
		found, err := s.List(ctx, after, page.Limit+1)
		if err != nil {
			return err
		}
		if len(found) > page.Limit {
			found = found[:page.Limit]
			out.NextCursor = web.Cursor(found[len(found)-1].ID)
		}
		for _, cust := range found {
			out.Customers = append(out.Customers, cust.Wire())
		}
		return c.JSON(http.StatusOK, out)
	}
}

func get(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		out, err := s.Get(c.Request().Context(), c.Param("id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out.Wire())
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
		return c.JSON(http.StatusOK, out.Wire())
	}
}
