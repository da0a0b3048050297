-- The monolith's customers (its customers module's table) and the payments service's copy of
-- them (the service's table), as their own migrations create them. Each side of a test gets
-- both; each uses its own.
CREATE TABLE customers_customers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    credit_limit_cents BIGINT NOT NULL CHECK (credit_limit_cents >= 0),
    version BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE payments_customers (
    customer_id TEXT PRIMARY KEY,
    email TEXT,
    credit_limit_cents BIGINT NOT NULL CHECK (credit_limit_cents >= 0),
    version BIGINT NOT NULL CHECK (version >= 1),
    updated_at TIMESTAMP NOT NULL,
    applied_at TIMESTAMP NOT NULL
);
