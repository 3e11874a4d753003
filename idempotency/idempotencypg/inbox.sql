-- Processed keys of idempotencypg.Inbox. A key's row commits in the same
-- transaction as the handler's writes.
CREATE TABLE IF NOT EXISTS {{.Table}} (
    key          text        PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- For DeleteInboxOlderThan.
CREATE INDEX IF NOT EXISTS {{.ProcessedIndex}} ON {{.Table}} (processed_at);
