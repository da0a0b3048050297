-- Portable SQL (SQLite and PostgreSQL). Integers are BIGINT: PostgreSQL's INTEGER is 32-bit.
CREATE TABLE orders_orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    total_cents BIGINT NOT NULL,
    payment_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    cancelled_at TIMESTAMP
);
CREATE INDEX orders_orders_customer ON orders_orders (customer_id, created_at);
CREATE TABLE orders_lines (
    order_id TEXT NOT NULL REFERENCES orders_orders (id),
    sku TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL,
    PRIMARY KEY (order_id, sku)
);
