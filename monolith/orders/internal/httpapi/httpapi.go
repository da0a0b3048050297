// Package httpapi serves the orders module's part of the shop's HTTP contract.
package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ficus-project/ficus/monolith/orders/internal/domain"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/fault"
	"github.com/ficus-project/ficus/platform/web"
)

// Service is what the handlers need of the module.
type Service interface {
	Place(ctx context.Context, p domain.PlaceOrder) (domain.Order, error)
	Order(ctx context.Context, id string) (domain.Order, error)
	ByCustomer(ctx context.Context, customerID string, after *domain.Key, limit int) ([]domain.Order, error)
	Cancel(ctx context.Context, id string) (domain.Order, error)
	// Details returns the order with its payment and reservation, as the contract shows it.
	Details(ctx context.Context, id string) (contract.OrderDetails, error)
}

// Register adds the module's routes to g; idempotent guards the unsafe POST.
func Register(g *echo.Group, s Service, idempotent echo.MiddlewareFunc) {
	g.POST("/api/orders", place(s), idempotent)
	g.GET("/api/orders", list(s))
	g.GET("/api/orders/:id", get(s))
	g.GET("/api/orders/:id/details", details(s))
	g.POST("/api/orders/:id/cancel", cancel(s))
}

// place answers 201 with the placed order; in saga mode, 202 with the order still pending
// when its saga has not ended within the module's reply time, with Location to poll.
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
		if out.InProgress() {
			c.Response().Header().Set("Retry-After", "1")
			return c.JSON(http.StatusAccepted, out.Wire())
		}
		return c.JSON(http.StatusCreated, out.Wire())
	}
}

func details(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		out, err := s.Details(c.Request().Context(), c.Param("id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
}

// list pages through a customer's orders, newest first. The cursor holds the last order's
// exact creation time and id: the keyset the next page starts after.
func list(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.QueryParam("customer_id")
		var f fault.Fields
		f.Check(id != "", "customer_id", "the query parameter is required")
		if err := f.Err(); err != nil {
			return err
		}
		page, err := web.ParsePage(c, contract.DefaultPageLimit, contract.MaxPageLimit, 2)
		if err != nil {
			return err
		}
		var after *domain.Key
		if page.After != nil {
			at, err := time.Parse(time.RFC3339Nano, page.After[0])
			if err != nil || page.After[1] == "" {
				f.Check(false, "cursor", "is not a cursor this list returned")
				return f.Err()
			}
			after = &domain.Key{CreatedAt: at.UTC(), ID: page.After[1]}
		}
		// One more than the page holds says whether there is a next page.
		orders, err := s.ByCustomer(c.Request().Context(), id, after, page.Limit+1)
		if err != nil {
			return err
		}
		out := contract.OrderList{Orders: make([]contract.Order, 0, len(orders))}
		if len(orders) > page.Limit {
			orders = orders[:page.Limit]
			last := orders[len(orders)-1]
			out.NextCursor = web.Cursor(last.CreatedAt.UTC().Format(time.RFC3339Nano), last.ID)
		}
		for _, o := range orders {
			out.Orders = append(out.Orders, o.Wire())
		}
		return c.JSON(http.StatusOK, out)
	}
}

func get(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		out, err := s.Order(c.Request().Context(), c.Param("id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out.Wire())
	}
}

// cancel answers 200 with the cancelled order; in saga mode, 202 with the order (still
// placed, its cancel saga at work) when the cancellation has not ended within the module's
// reply time.
func cancel(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		out, err := s.Cancel(c.Request().Context(), c.Param("id"))
		if err != nil {
			return err
		}
		if out.InProgress() {
			c.Response().Header().Set(echo.HeaderLocation, "/api/orders/"+out.ID)
			c.Response().Header().Set("Retry-After", "1")
			return c.JSON(http.StatusAccepted, out.Wire())
		}
		return c.JSON(http.StatusOK, out.Wire())
	}
}
