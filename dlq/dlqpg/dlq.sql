-- Dead-letter entries of dlqpg.Store.
--
-- id sorts bytewise (COLLATE "C"), as Go compares strings, so listings
-- break ties in LastFailedAt the same way in every database.
CREATE TABLE IF NOT EXISTS {{.Table}} (
    id              text COLLATE "C" PRIMARY KEY,
    message_id      text        NOT NULL,
    message_key     text        NOT NULL,
    body            bytea,                 -- NULL for a nil body
    headers         jsonb,                 -- string to string; NULL for nil headers
    attempt         bigint      NOT NULL,
    enqueued_at     timestamptz,           -- NULL when unknown
    source          text        NOT NULL,
    reason          text        NOT NULL,
    error           text        NOT NULL,
    error_chain     text[],                -- outermost first; NULL for a nil chain
    attempts        bigint      NOT NULL,
    first_failed_at timestamptz,           -- NULL when unknown
    last_failed_at  timestamptz NOT NULL,
    reserved_token  text,                  -- set while a replay holds the entry
    reserved_until  timestamptz,
    CHECK ((reserved_token IS NULL) = (reserved_until IS NULL))
);

-- Listing, oldest first: keyset pagination on (last_failed_at, id).
CREATE INDEX IF NOT EXISTS {{.LastFailedIndex}} ON {{.Table}} (last_failed_at, id);

-- Listing, counting and purging by reason or by source.
CREATE INDEX IF NOT EXISTS {{.ReasonIndex}} ON {{.Table}} (reason, last_failed_at, id);
CREATE INDEX IF NOT EXISTS {{.SourceIndex}} ON {{.Table}} (source, last_failed_at, id);
