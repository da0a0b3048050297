-- Portable SQL (SQLite and PostgreSQL). Integers are BIGINT: PostgreSQL's INTEGER is 32-bit.
CREATE TABLE customers_customers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    credit_limit_cents BIGINT NOT NULL CHECK (credit_limit_cents >= 0),
    version BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
