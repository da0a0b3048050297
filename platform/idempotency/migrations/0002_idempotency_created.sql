-- Keys are pruned oldest first (retention.idempotency): find them without reading the table.
CREATE INDEX ficus_idempotency_created ON ficus_idempotency (created_at);
