-- ficus migrate's bookkeeping, kept in the TARGET database of a migration (the service's
-- going forward, the monolith's in reverse). One row per capability and direction in each
-- table: nothing here grows with the data copied.
-- Portable SQL (SQLite and PostgreSQL).
CREATE TABLE ficus_migrate_runs (
    capability TEXT NOT NULL,
    direction TEXT NOT NULL,
    -- The database copied from, as the run named it (never a password).
    source TEXT NOT NULL,
    -- The events stream's last sequence, read before the backfill's first batch: sync
    -- replays the events after it.
    sync_from BIGINT NOT NULL,
    -- The last stream sequence sync has applied (sync_from until it first runs).
    synced_to BIGINT NOT NULL,
    events_applied BIGINT NOT NULL,
    backfill_started_at TIMESTAMP NOT NULL,
    backfill_done_at TIMESTAMP,
    -- When sync last applied a batch, and the time of the newest event it applied: the
    -- copy's lag behind the source.
    synced_at TIMESTAMP,
    last_event_at TIMESTAMP,
    -- The process that runs the migration now (host:pid) and until when its claim holds;
    -- a second backfill or sync of the same capability and direction is refused meanwhile.
    holder TEXT NOT NULL,
    lease_until TIMESTAMP NOT NULL,
    PRIMARY KEY (capability, direction)
);
CREATE TABLE ficus_migrate_tables (
    capability TEXT NOT NULL,
    direction TEXT NOT NULL,
    tbl TEXT NOT NULL,
    -- The key of the last row copied, as a JSON array; NULL before the first batch.
    after_key TEXT,
    rows_copied BIGINT NOT NULL,
    -- The source's row count when the table's copy began: progress, not a promise.
    rows_expected BIGINT NOT NULL,
    done_at TIMESTAMP,
    PRIMARY KEY (capability, direction, tbl)
);
-- The last verify of each capability and direction, for the dashboard.
CREATE TABLE ficus_migrate_verifications (
    capability TEXT NOT NULL,
    direction TEXT NOT NULL,
    verified_at TIMESTAMP NOT NULL,
    rows_compared BIGINT NOT NULL,
    differences BIGINT NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (capability, direction)
);
