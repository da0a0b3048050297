-- A running total per customer, so a charge's credit check does not sum every payment.
CREATE TABLE payments_balances (
    customer_id TEXT PRIMARY KEY,
    outstanding_cents BIGINT NOT NULL CHECK (outstanding_cents >= 0)
);
INSERT INTO payments_balances (customer_id, outstanding_cents)
    SELECT customer_id, SUM(amount_cents) FROM payments_payments WHERE status = 'captured' GROUP BY customer_id;
