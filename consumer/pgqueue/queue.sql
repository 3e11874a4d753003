-- Messages of pgqueue: one row per message not yet acknowledged, for every
-- logical queue that shares the table.
--
-- visible_at is when the row may be fetched next: its publish time, the end
-- of a Nack's delay, or, while a consumer holds it, the end of its lease. So
-- an expired lease makes the row fetchable again with no reaper.
--
-- Lease tokens come from a sequence, so a row never gets the same token
-- twice and a stale holder can never pass for the current one.
CREATE SEQUENCE IF NOT EXISTS {{.Seq}} AS bigint;

CREATE TABLE IF NOT EXISTS {{.Table}} (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       text        NOT NULL,
    message_id  text        NOT NULL,
    key         text        NOT NULL DEFAULT '',
    body        bytea,                  -- NULL for a nil body
    headers     jsonb,                  -- {"name": "value"}; NULL for no headers
    attempts    integer     NOT NULL DEFAULT 0,  -- deliveries made so far
    enqueued_at timestamptz NOT NULL,
    visible_at  timestamptz NOT NULL,
    lease_token bigint                  -- set while a consumer holds the row
);

-- Dropping the table drops its sequence.
ALTER SEQUENCE {{.Seq}} OWNED BY {{.Table}}.lease_token;

-- Fetch: the ready rows of one queue, oldest visible first.
CREATE INDEX IF NOT EXISTS {{.FetchIndex}} ON {{.Table}} (queue, visible_at, id);
