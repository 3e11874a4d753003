-- The transactional outbox of package outbox.
--
-- {{.Table}} holds the events: those waiting to be published and, with a
-- retention, published ones until they expire. An event with a key has a
-- seq, its place in its key's order; an event without a key has none and
-- is leased on its own row (visible_at, lease_token).
--
-- {{.Keys}} is the writers' side of a key: seq is the last number given
-- out. Enqueue increments it with an upsert, whose row lock serialises the
-- writers of one key until they commit, so a key's seq order is its commit
-- order, without gaps (a rollback undoes the increment).
--
-- {{.Cursors}} is the relays' side of a key, in rows that writers never
-- lock: how far it has been published, and the lease of the relay that
-- holds it. A key has a row in both tables from its first Enqueue until a
-- relay finds every seq given out published, and deletes both.
--
-- {{.Failed}} holds the events a relay gave up on, for an operator to
-- inspect and requeue. Nothing deletes them but you.
--
-- {{.Awake}} has one row: until when some relay has promised to look for
-- events every few milliseconds. While it has, writers do not notify (see
-- Options.Notify in package outbox): a notification serialises commits.
--
-- Lease tokens come from {{.TokenSeq}}, so a stale holder never passes for
-- the current one.
CREATE SEQUENCE IF NOT EXISTS {{.TokenSeq}} AS bigint;

CREATE TABLE IF NOT EXISTS {{.Table}} (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   text        NOT NULL,
    key          text        NOT NULL,          -- '' for an event without a key
    seq          bigint,                        -- place in its key's order; NULL without a key
    destination  text        NOT NULL,
    body         bytea,                         -- NULL for a nil body
    headers      jsonb,                         -- {"name": "value"}; NULL for no headers
    enqueued_at  timestamptz NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0, -- failed publishes so far
    last_error   text,
    visible_at   timestamptz,                   -- without a key: claimable from (lease end, retry time)
    lease_token  bigint,                        -- without a key: the relay holding it
    published_at timestamptz                    -- set when published, with a retention
);

ALTER SEQUENCE {{.TokenSeq}} OWNED BY {{.Table}}.lease_token;

-- A key's pending events in order; unique, so no seq is ever used twice.
CREATE UNIQUE INDEX IF NOT EXISTS {{.PendingIndex}} ON {{.Table}} (key, seq)
    WHERE seq IS NOT NULL AND published_at IS NULL;

-- Claimable events without a key, oldest first.
CREATE INDEX IF NOT EXISTS {{.UnkeyedIndex}} ON {{.Table}} (visible_at, id)
    WHERE seq IS NULL AND published_at IS NULL;

-- Published events kept for the retention, oldest first.
CREATE INDEX IF NOT EXISTS {{.PublishedIndex}} ON {{.Table}} (published_at)
    WHERE published_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS {{.Keys}} (
    key text   PRIMARY KEY,
    seq bigint NOT NULL   -- the last seq given out
);

CREATE TABLE IF NOT EXISTS {{.Cursors}} (
    key           text        PRIMARY KEY,
    published_seq bigint      NOT NULL DEFAULT 0, -- every seq up to it is published (or failed)
    ready_at      timestamptz NOT NULL,           -- claimable from: lease end, retry time, or when it became ready
    lease_token   bigint                          -- the relay holding it
);

-- Claims: the keys that have waited longest first.
CREATE INDEX IF NOT EXISTS {{.ReadyIndex}} ON {{.Cursors}} (ready_at);

CREATE TABLE IF NOT EXISTS {{.Failed}} (
    id          bigint      PRIMARY KEY,         -- its id in {{.Table}}
    message_id  text        NOT NULL,
    key         text        NOT NULL,
    seq         bigint,
    destination text        NOT NULL,
    body        bytea,
    headers     jsonb,
    enqueued_at timestamptz NOT NULL,
    attempts    integer     NOT NULL,
    last_error  text        NOT NULL,
    failed_at   timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS {{.FailedIndex}} ON {{.Failed}} (message_id);

CREATE TABLE IF NOT EXISTS {{.Awake}} (
    one   boolean     PRIMARY KEY DEFAULT true CHECK (one),
    until timestamptz NOT NULL
);

INSERT INTO {{.Awake}} (until) VALUES ('-infinity') ON CONFLICT DO NOTHING;
