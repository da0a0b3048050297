-- The order saga (remote mode, docs/saga.md): one row per order placed or cancelled through
-- it, changed only with a version check. Portable SQL; request, lines, steps and reason are
-- JSON text. request_key is NULL for a saga started without an Idempotency-Key (both engines
-- allow any number of NULLs in a unique index).
CREATE TABLE orders_sagas (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    request_key TEXT,
    customer_id TEXT NOT NULL,
    request TEXT NOT NULL,
    lines TEXT NOT NULL,
    total_cents BIGINT NOT NULL,
    payment_id TEXT NOT NULL,
    state TEXT NOT NULL,
    step TEXT NOT NULL,
    steps TEXT NOT NULL,
    reason TEXT NOT NULL,
    version BIGINT NOT NULL,
    owner TEXT NOT NULL,
    lease_until TIMESTAMP NOT NULL,
    next_at TIMESTAMP NOT NULL,
    deadline TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);
CREATE UNIQUE INDEX orders_sagas_request_key ON orders_sagas (request_key);
-- The runner's scan: sagas still to drive, by when their next attempt is due.
CREATE INDEX orders_sagas_due ON orders_sagas (state, next_at);
