CREATE TABLE ficus_inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    processed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX ficus_inbox_processed ON ficus_inbox (processed_at);
