-- Tables of stockpg.Store. See the package documentation for what each
-- column means and which statements change it.

-- One row per item: its configuration, read (never locked) by Reserve.
CREATE TABLE IF NOT EXISTS {{.Items}} (
    item         text        PRIMARY KEY,
    codes        boolean     NOT NULL,
    holder_limit integer     NOT NULL DEFAULT 0 CHECK (holder_limit >= 0),
    disabled     boolean     NOT NULL DEFAULT false,
    reason       text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT statement_timestamp()
);

-- An item's free units, split across one row per shard. added counts the
-- units ever restocked or codes ever loaded, so that the confirmed units
-- follow from the other counts. The rows are updated often and their
-- columns are not indexed: room on the page keeps the updates HOT.
CREATE TABLE IF NOT EXISTS {{.Shards}} (
    item      text    NOT NULL,
    shard     integer NOT NULL CHECK (shard >= 0),
    available bigint  NOT NULL DEFAULT 0 CHECK (available >= 0),
    added     bigint  NOT NULL DEFAULT 0 CHECK (added >= 0),
    PRIMARY KEY (item, shard)
) WITH (fillfactor = 50);

-- Reservations. state moves only forward, from 'held' to one of the
-- others. A held row whose expires_at has passed is expired whether or not
-- its state says so yet. shard is where its units go back. counted says
-- its units are still included in its holder's row in the holders table.
CREATE TABLE IF NOT EXISTS {{.Reservations}} (
    id         text        PRIMARY KEY,
    item       text        NOT NULL,
    holder     text        NOT NULL,
    quantity   integer     NOT NULL CHECK (quantity > 0),
    state      text        NOT NULL CHECK (state IN ('held', 'confirmed', 'released', 'expired')),
    shard      integer     NOT NULL,
    counted    boolean     NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    ended_at   timestamptz,           -- when it left 'held'
    codes      text[]                 -- a confirmed code reservation's codes
);

-- Holds by item and deadline: expired holds of an item (Reserve) and the
-- held units (Level).
CREATE INDEX IF NOT EXISTS {{.HeldIndex}} ON {{.Reservations}} (item, expires_at)
    INCLUDE (shard, quantity) WHERE state = 'held';

-- Expired holds across items, for Sweep.
CREATE INDEX IF NOT EXISTS {{.DueIndex}} ON {{.Reservations}} (expires_at) WHERE state = 'held';

-- A holder's counted reservations of an item, for the per-holder limit.
CREATE INDEX IF NOT EXISTS {{.HolderIndex}} ON {{.Reservations}} (item, holder) WHERE counted;

-- Units each holder has of each item, held or confirmed, for the
-- per-holder limit. last_id is the reservation that last added units, how
-- Reserve learns whether its own update added them.
CREATE TABLE IF NOT EXISTS {{.Holders}} (
    item    text   NOT NULL,
    holder  text   NOT NULL,
    units   bigint NOT NULL CHECK (units >= 0),
    last_id text   NOT NULL,
    PRIMARY KEY (item, holder)
) WITH (fillfactor = 70);

-- Code pools: one row per code, given to the reservation that confirmed
-- it, in the order the codes were loaded.
CREATE TABLE IF NOT EXISTS {{.Codes}} (
    item           text   NOT NULL,
    code           text   NOT NULL,
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    reservation_id text,
    PRIMARY KEY (item, code)
);

CREATE INDEX IF NOT EXISTS {{.FreeIndex}} ON {{.Codes}} (item, seq) WHERE reservation_id IS NULL;
