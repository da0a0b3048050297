-- seq numbers the events in the order they were recorded. PostgreSQL runs transactions side by
-- side: each takes numbers from the sequence as it inserts, may commit in another order, and
-- leaves a gap if it rolls back. So the relay never reads "after the last seq sent", only
-- "what is not sent yet, by seq" (see docs/events.md), and the trigger below numbers each
-- row only once its transaction holds a lock on the row's subject, kept until it ends: a
-- subject's events are numbered, and so published, in the order their transactions commit.
CREATE SEQUENCE ficus_outbox_seq AS BIGINT;
CREATE TABLE ficus_outbox (
    seq BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload BYTEA NOT NULL,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP
);
ALTER SEQUENCE ficus_outbox_seq OWNED BY ficus_outbox.seq;
CREATE INDEX ficus_outbox_pending ON ficus_outbox (seq) WHERE sent_at IS NULL;
CREATE FUNCTION ficus_outbox_number() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('ficus_outbox:' || NEW.subject, 0));
    NEW.seq := nextval('ficus_outbox_seq');
    RETURN NEW;
END;
$$;
CREATE TRIGGER ficus_outbox_number BEFORE INSERT ON ficus_outbox
    FOR EACH ROW EXECUTE FUNCTION ficus_outbox_number();
