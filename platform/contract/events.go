package contract

// Event types, versioned. A change that breaks consumers gets a new version (.v2) and both are
// emitted until no consumer reads the old one.
const (
	TypeOrderPlaced               = "shop.orders.order_placed.v1"
	TypeOrderCancelled            = "shop.orders.order_cancelled.v1"
	TypeStockChanged              = "shop.inventory.stock_changed.v1"
	TypePaymentCaptured           = "shop.payments.payment_captured.v1"
	TypePaymentRefunded           = "shop.payments.payment_refunded.v1"
	TypeCustomerRegistered        = "shop.customers.customer_registered.v1"
	TypeCustomerCreditLimitChange = "shop.customers.credit_limit_changed.v1"
)

// OrderLine is one line of an order event.
type OrderLine struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// OrderPlaced is the data of TypeOrderPlaced.
type OrderPlaced struct {
	OrderID    string      `json:"order_id"`
	CustomerID string      `json:"customer_id"`
	TotalCents int64       `json:"total_cents"`
	PaymentID  string      `json:"payment_id"`
	Lines      []OrderLine `json:"lines"`
}

// OrderCancelled is the data of TypeOrderCancelled.
type OrderCancelled struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Reason     string `json:"reason,omitempty"`
}

// StockChanged is the data of TypeStockChanged: absolute figures after the change, so a
// consumer needs no history, and a per-SKU version, so it can ignore stale ones.
type StockChanged struct {
	SKU      string `json:"sku"`
	OnHand   int    `json:"on_hand"`
	Reserved int    `json:"reserved"`
	Version  int64  `json:"version"`
	// Name and PriceCents travel along so a consumer can build its copy from events alone.
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
}

// PaymentCaptured is the data of TypePaymentCaptured.
type PaymentCaptured struct {
	PaymentID   string `json:"payment_id"`
	CustomerID  string `json:"customer_id"`
	Reference   string `json:"reference"`
	AmountCents int64  `json:"amount_cents"`
}

// PaymentRefunded is the data of TypePaymentRefunded.
type PaymentRefunded struct {
	PaymentID   string `json:"payment_id"`
	CustomerID  string `json:"customer_id"`
	Reference   string `json:"reference"`
	AmountCents int64  `json:"amount_cents"`
}

// CustomerRegistered is the data of TypeCustomerRegistered.
type CustomerRegistered struct {
	CustomerID       string `json:"customer_id"`
	Name             string `json:"name"`
	Email            string `json:"email"`
	CreditLimitCents int64  `json:"credit_limit_cents"`
}

// CustomerCreditLimitChanged is the data of TypeCustomerCreditLimitChange.
type CustomerCreditLimitChanged struct {
	CustomerID       string `json:"customer_id"`
	CreditLimitCents int64  `json:"credit_limit_cents"`
	Version          int64  `json:"version"`
}

// EventTypes returns every event type above; each has a schema in events_schema.yaml.
func EventTypes() []string {
	return []string{
		TypeOrderPlaced,
		TypeOrderCancelled,
		TypeStockChanged,
		TypePaymentCaptured,
		TypePaymentRefunded,
		TypeCustomerRegistered,
		TypeCustomerCreditLimitChange,
	}
}
