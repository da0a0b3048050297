-- seq numbers the events in the order they were recorded. On SQLite, whose writers take
-- turns, that is also the order their transactions commit in. AUTOINCREMENT never reuses a
-- number, even after the newest rows are deleted.
CREATE TABLE ficus_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP
);
CREATE INDEX ficus_outbox_pending ON ficus_outbox (seq) WHERE sent_at IS NULL;
