CREATE TABLE inventory_items (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    on_hand INTEGER NOT NULL CHECK (on_hand >= 0),
    reserved INTEGER NOT NULL CHECK (reserved >= 0 AND reserved <= on_hand),
    version INTEGER NOT NULL,
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
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, sku)
);
