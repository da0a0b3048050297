// Package httpapi serves the inventory service's part of the shop's HTTP contract.
package httpapi

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/ficus-project/ficus/extracted/inventory/internal/domain"
	"github.com/ficus-project/ficus/platform/contract"
	"github.com/ficus-project/ficus/platform/web"
)

// Service is what the handlers need of the service.
type Service interface {
	CreateItem(ctx context.Context, n domain.NewItem) (domain.Item, error)
	Item(ctx context.Context, sku string) (domain.Item, error)
	Items(ctx context.Context, afterSKU string, limit int) ([]domain.Item, error)
	Restock(ctx context.Context, sku string, quantity int) (domain.Item, error)
	Reserve(ctx context.Context, n domain.NewReservation) (domain.Reservation, error)
	Reservation(ctx context.Context, orderID string) (domain.Reservation, error)
	Commit(ctx context.Context, orderID string) (domain.Reservation, error)
	Release(ctx context.Context, orderID string) (domain.Reservation, error)
	Return(ctx context.Context, orderID string) (domain.Reservation, error)
}

// Register adds the service's routes to g.
func Register(g *echo.Group, s Service) {
	g.GET("/api/inventory/items", listItems(s))
	g.POST("/api/inventory/items", createItem(s))
	g.GET("/api/inventory/items/:sku", getItem(s))
	g.POST("/api/inventory/items/:sku/restock", restock(s))
	g.POST("/api/inventory/reservations", reserve(s))
	g.GET("/api/inventory/reservations/:order_id", getReservation(s))
	g.POST("/api/inventory/reservations/:order_id/commit", reservationStep(s.Commit))
	g.POST("/api/inventory/reservations/:order_id/release", reservationStep(s.Release))
	g.POST("/api/inventory/reservations/:order_id/return", reservationStep(s.Return))
}

// listItems pages through the items by SKU.
func listItems(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		page, err := web.ParsePage(c, contract.DefaultPageLimit, contract.MaxPageLimit, 1)
		if err != nil {
			return err
		}
		after := ""
		if page.After != nil {
			after = page.After[0]
		}
		// One more than the page holds says whether there is a next page.
		items, err := s.Items(c.Request().Context(), after, page.Limit+1)
		if err != nil {
			return err
		}
		out := contract.ItemList{Items: make([]contract.Item, 0, len(items))}
		if len(items) > page.Limit {
			items = items[:page.Limit]
			out.NextCursor = web.Cursor(items[len(items)-1].SKU)
		}
		for _, it := range items {
			out.Items = append(out.Items, it.Wire())
		}
		return c.JSON(http.StatusOK, out)
	}
}

func createItem(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		var in domain.NewItem
		if err := web.Bind(c, &in); err != nil {
			return err
		}
		out, err := s.CreateItem(c.Request().Context(), in)
		if err != nil {
			return err
		}
		c.Response().Header().Set(echo.HeaderLocation, "/api/inventory/items/"+out.SKU)
		return c.JSON(http.StatusCreated, out.Wire())
	}
}

func getItem(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		out, err := s.Item(c.Request().Context(), c.Param("sku"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out.Wire())
	}
}

func restock(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		var in domain.Restock
		if err := web.Bind(c, &in); err != nil {
			return err
		}
		if err := in.Validate(); err != nil {
			return err
		}
		out, err := s.Restock(c.Request().Context(), c.Param("sku"), *in.Quantity)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out.Wire())
	}
}

func reserve(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		var in domain.NewReservation
		if err := web.Bind(c, &in); err != nil {
			return err
		}
		out, err := s.Reserve(c.Request().Context(), in)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, out.Wire())
	}
}

func getReservation(s Service) echo.HandlerFunc {
	return func(c echo.Context) error {
		out, err := s.Reservation(c.Request().Context(), c.Param("order_id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out.Wire())
	}
}

func reservationStep(step func(ctx context.Context, orderID string) (domain.Reservation, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		out, err := step(c.Request().Context(), c.Param("order_id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out.Wire())
	}
}
