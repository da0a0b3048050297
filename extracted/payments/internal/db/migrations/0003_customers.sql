-- The service's copy of what it needs to know of the monolith's customers, fed by their
-- customer_registered and credit_limit_changed events (never by reading another database).
-- email is NULL while only a credit_limit_changed event has arrived: a charge needs the
-- registration too. version is the customer's version the row reflects (registration is 1);
-- an event with an older version changes nothing. updated_at is when the monolith made the
-- change the row reflects (the event's time), applied_at when this service applied it.
CREATE TABLE payments_customers (
    customer_id TEXT PRIMARY KEY,
    email TEXT,
    credit_limit_cents BIGINT NOT NULL CHECK (credit_limit_cents >= 0),
    version BIGINT NOT NULL CHECK (version >= 1),
    updated_at TIMESTAMP NOT NULL,
    applied_at TIMESTAMP NOT NULL
);
