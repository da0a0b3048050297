-- One row per outbox: the relay that holds the lease is the only one publishing. Times are
-- Unix milliseconds so they compare as numbers on every database.
CREATE TABLE ficus_outbox_lease (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
