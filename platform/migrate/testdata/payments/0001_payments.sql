-- Portable SQL (SQLite and PostgreSQL). Integers are BIGINT: PostgreSQL's INTEGER is 32-bit.
CREATE TABLE payments_payments (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    reference TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    refunded_at TIMESTAMP
);
CREATE INDEX payments_payments_customer ON payments_payments (customer_id, status);
