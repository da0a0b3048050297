-- Portable SQL (SQLite and PostgreSQL). Integers are BIGINT: PostgreSQL's INTEGER is 32-bit.
CREATE TABLE inventory_items (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    on_hand BIGINT NOT NULL CHECK (on_hand >= 0),
    reserved BIGINT NOT NULL CHECK (reserved >= 0 AND reserved <= on_hand),
    version BIGINT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE inventory_reservations (
    order_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE inventory_reservation_lines (
    order_id TEXT NOT NULL REFERENCES inventory_reservations (order_id),
    sku TEXT NOT NULL REFERENCES inventory_items (sku),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL,
    PRIMARY KEY (order_id, sku)
);
