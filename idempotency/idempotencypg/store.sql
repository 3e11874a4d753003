-- Dedupe keys of idempotencypg.Store.
--
-- Tokens come from a sequence, not a per-row counter, so that a key's
-- tokens keep growing after its row is released, reaped or taken over.
CREATE SEQUENCE IF NOT EXISTS {{.Seq}} AS bigint;

CREATE TABLE IF NOT EXISTS {{.Table}} (
    key         text        PRIMARY KEY,
    fingerprint text        NOT NULL DEFAULT '',
    state       text        NOT NULL CHECK (state IN ('in progress', 'completed')),
    token       bigint      NOT NULL,
    result      bytea,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Dropping the table drops its sequence.
ALTER SEQUENCE {{.Seq}} OWNED BY {{.Table}}.token;

-- For the reaper, which deletes rows whose lease or retention ran out.
CREATE INDEX IF NOT EXISTS {{.ExpiresIndex}} ON {{.Table}} (expires_at);
