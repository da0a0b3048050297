-- seq numbers the events in the order they were recorded, from a sequence: transactions
-- running side by side take numbers as they insert and may commit in another order, and a
-- rolled-back transaction leaves a gap. The relay therefore never reads "after the last seq
-- sent", only "what is not sent yet, by seq" (see docs/events.md), and outbox.Add locks each
-- event's subject first, so that one subject's numbers follow its commit order.
CREATE TABLE ficus_outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload BYTEA NOT NULL,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP
);
CREATE INDEX ficus_outbox_pending ON ficus_outbox (seq) WHERE sent_at IS NULL;
