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
-- per-holder limit. last_id is the reservation that last added units.
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

-- Reserve: the requests of one batch of the group commit (or the one
-- request of a Reserve that runs alone), all for p_item, in order, in the
-- caller's transaction (normally one of its own), with exactly the outcome
-- each would have had alone, one after the other. It locks, once for the
-- batch, every shard of the item in order when p_shard is negative, or
-- else one shard: one that no one else holds (p_shard preferred), or, if
-- all are held, the best one once it is free. Then it locks the batch's
-- holders' reservations that no longer count and expired holds of the
-- locked shards (SKIP LOCKED); then, for an item with a holder limit, the
-- holder rows, in the order of p_holders; then the new reservations'
-- keys, in the byte order of their IDs; then, for an item without a limit,
-- the holder rows, in the order of p_holders. Every batch and every other
-- statement takes its locks in that order, and waits for a shard only
-- while it holds no other or lower ones, so no two of them deadlock.
--
-- p_holders are the batch's distinct holders; per request, p_hidx is the
-- position of its holder in them and p_prev that of the previous request
-- with the same ID (0 for none). p_reclaim bounds the expired holds of
-- other holders taken back at first; more are taken back, a thousand at a
-- time, while the batch asks for more units than it has.
--
-- Each request answers one row, in order; o_outcome is one of
--   new       the reservation was made (its row follows)
--   prior     its ID already has a reservation (its row follows; the
--             caller checks that it is the same request)
--   unknown, disabled, limit, soldout
--             refused; o_available and o_reason tell the item's state
--   next      (p_shard >= 0 only) the shard has too few units, and a
--             snapshot says the item as a whole may have enough: ask
--             again with every shard locked
-- A concurrent Reserve that inserts one of the IDs first makes the batch
-- decide again, with that request answered as prior.
CREATE OR REPLACE FUNCTION {{.ReserveBatch}}(
    p_item    text,
    p_shard   integer,
    p_holders text[],
    p_hidx    integer[],
    p_ids     text[],
    p_prev    integer[],
    p_qtys    integer[],
    p_holds   bigint[],
    p_reclaim integer)
RETURNS TABLE (o_outcome text, o_item text, o_holder text, o_quantity integer, o_state text,
               o_expires_at timestamptz, o_codes text[], o_due boolean, o_available bigint, o_reason text)
LANGUAGE plpgsql
-- Every batch runs the same statements, each on a few rows found by key:
-- they are planned once per connection, and for index lookups whatever
-- the statistics say (a table that grew from empty since the last ANALYZE
-- would otherwise be scanned whole by a plan made when it was small). For
-- the same reason, rows are looked up per request or holder in LATERAL
-- subqueries that OFFSET 0 keeps from being flattened into joins.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $fn$
DECLARE
    v_ts        timestamptz := statement_timestamp();
    v_n         integer := coalesce(cardinality(p_ids), 0);
    v_nh        integer := coalesce(cardinality(p_holders), 0);
    v_prior     boolean[];   -- per request: its ID has a reservation
    v_oc        text[];      -- per request: the outcome
    v_avail     bigint[];    -- per request: the units reported with a refusal
    v_known     boolean;
    v_limit     integer;
    v_disabled  boolean;
    v_reason    text;
    v_snap      bigint := 0; -- a snapshot's free units and expired holds
    v_need      bigint;      -- the units the batch asks for
    v_minq      integer;     -- the smallest request
    v_locked    boolean := false;
    v_shards    integer[] := '{}';
    v_nshards   integer := 0;
    v_free      bigint := 0; -- the locked shards' free units
    v_back      bigint := 0; -- the units of the expired holds taken back
    v_mine      bigint[];    -- per holder: units that stopped counting
    v_anymine   boolean;
    v_units     bigint[];    -- per holder: the locked row's units (with a limit)
    v_lim       integer;
    v_got       integer;
    v_sum       bigint;
    v_total     bigint;
    v_granted   bigint[];    -- per holder: units the batch granted
    v_last      text[];      -- per holder: the last reservation granted
    v_new       integer;
    v_inserted  text[];
    v_conflicts text[];
    v_i         integer;
    v_j         integer;
    v_h         integer;
    v_q         integer;
    v_off       integer;
    v_one       integer;
BEGIN
    IF v_n = 0 THEN
        RETURN;
    END IF;

    -- The reservations that the IDs already have, the item, and a
    -- snapshot of its free units and expired holds.
    WITH p AS MATERIALIZED (
        SELECT u.ord, u.q, r.found IS NOT NULL AS found
        FROM unnest(p_ids, p_qtys) WITH ORDINALITY AS u(id, q, ord)
        LEFT JOIN LATERAL (
            SELECT true AS found FROM {{.Reservations}} x WHERE x.id = u.id OFFSET 0
        ) r ON true
    )
    SELECT (SELECT array_agg(p.found ORDER BY p.ord) FROM p),
           (SELECT sum(p.q) FROM p WHERE NOT p.found),
           (SELECT min(p.q) FROM p WHERE NOT p.found),
           it.item IS NOT NULL, it.holder_limit, it.disabled, it.reason,
           coalesce((SELECT sum(s.available) FROM {{.Shards}} s WHERE s.item = p_item), 0)
           + coalesce((SELECT sum(r.quantity) FROM {{.Reservations}} r
                       WHERE r.item = p_item AND r.state = 'held' AND r.expires_at <= v_ts), 0)
    INTO v_prior, v_need, v_minq, v_known, v_limit, v_disabled, v_reason, v_snap
    FROM (SELECT) AS one
    LEFT JOIN {{.Items}} it ON it.item = p_item;

    -- The shards are locked only if some request may get units: with no
    -- limit to check, a snapshot that is short for every request refuses
    -- them all.
    IF v_known AND NOT v_disabled AND v_minq IS NOT NULL AND (v_limit > 0 OR v_snap >= v_minq) THEN
        IF p_shard < 0 THEN
            SELECT count(*), coalesce(sum(x.available), 0), coalesce(array_agg(x.shard ORDER BY x.shard), '{}')
            INTO v_nshards, v_free, v_shards
            FROM (SELECT s.shard, s.available FROM {{.Shards}} s
                  WHERE s.item = p_item
                  ORDER BY s.shard
                  FOR NO KEY UPDATE) x;
        ELSE
            -- A shard that no one else holds, one with units for the
            -- smallest request first, p_shard first among equals; or, if
            -- all are held, the first of them in that order, when it is
            -- free.
            SELECT s.shard, s.available INTO v_one, v_free
            FROM {{.Shards}} s
            WHERE s.item = p_item
            ORDER BY s.available >= v_minq DESC, s.shard = p_shard DESC, s.available DESC
            LIMIT 1
            FOR NO KEY UPDATE SKIP LOCKED;
            IF NOT FOUND THEN
                SELECT s.shard, s.available INTO v_one, v_free
                FROM {{.Shards}} s
                WHERE s.item = p_item
                  AND s.shard = (SELECT t.shard FROM {{.Shards}} t
                                 WHERE t.item = p_item
                                 ORDER BY t.available >= v_minq DESC, t.shard = p_shard DESC, t.available DESC
                                 LIMIT 1)
                FOR NO KEY UPDATE;
            END IF;
            IF FOUND THEN
                v_shards := ARRAY[v_one];
                v_nshards := 1;
            END IF;
        END IF;
        v_locked := v_nshards > 0;
    END IF;

    IF v_locked THEN
        -- The holders' reservations that no longer count: released and
        -- expired ones, and holds whose time has passed, in any shard.
        WITH c AS MATERIALIZED (
            SELECT l.id, l.was_held
            FROM unnest(p_holders) AS x(holder)
            CROSS JOIN LATERAL (
                SELECT r.id, r.state = 'held' AS was_held FROM {{.Reservations}} r
                WHERE r.item = p_item AND r.holder = x.holder AND r.counted
                  AND (r.state IN ('released', 'expired') OR (r.state = 'held' AND r.expires_at <= v_ts))
                OFFSET 0
                FOR NO KEY UPDATE SKIP LOCKED
            ) l
        ), u AS (
            UPDATE {{.Reservations}} r
            SET counted = false,
                state = CASE WHEN c.was_held THEN 'expired' ELSE r.state END,
                ended_at = CASE WHEN c.was_held THEN v_ts ELSE r.ended_at END
            FROM c
            WHERE r.id = c.id
            RETURNING r.holder, r.quantity, c.was_held
        ), m AS (
            SELECT u.holder, sum(u.quantity) AS units FROM u GROUP BY u.holder
        )
        SELECT (SELECT coalesce(sum(u.quantity) FILTER (WHERE u.was_held), 0) FROM u),
               array_agg(coalesce(m.units, 0)::bigint ORDER BY x.pos),
               bool_or(m.units IS NOT NULL)
        INTO v_back, v_mine, v_anymine
        FROM unnest(p_holders) WITH ORDINALITY AS x(holder, pos)
        LEFT JOIN m ON m.holder = x.holder;

        -- Expired holds of the locked shards, oldest first: a few, then
        -- more while the batch asks for more units than there are.
        v_lim := greatest(p_reclaim, 1);
        LOOP
            WITH c AS MATERIALIZED (
                SELECT r.id FROM {{.Reservations}} r
                WHERE r.item = p_item AND r.state = 'held' AND r.expires_at <= v_ts AND r.shard = ANY (v_shards)
                ORDER BY r.expires_at
                LIMIT v_lim
                FOR NO KEY UPDATE SKIP LOCKED
            ), u AS (
                UPDATE {{.Reservations}} r
                SET state = 'expired', ended_at = v_ts
                FROM c
                WHERE r.id = c.id
                RETURNING r.quantity
            )
            SELECT count(*), coalesce(sum(u.quantity), 0) INTO v_got, v_sum FROM u;
            v_back := v_back + v_sum;
            EXIT WHEN v_got < v_lim OR v_free + v_back >= v_need;
            v_lim := 1000;
        END LOOP;

        IF v_limit > 0 THEN
            INSERT INTO {{.Holders}} AS h (item, holder, units, last_id)
            SELECT p_item, x.holder, 0, '' FROM unnest(p_holders) WITH ORDINALITY AS x(holder, pos)
            ORDER BY x.pos
            ON CONFLICT (item, holder) DO UPDATE SET units = h.units WHERE false;
            SELECT array_agg(h.units ORDER BY x.pos) INTO v_units
            FROM unnest(p_holders) WITH ORDINALITY AS x(holder, pos)
            LEFT JOIN LATERAL (
                SELECT y.units FROM {{.Holders}} y WHERE y.item = p_item AND y.holder = x.holder OFFSET 0
            ) h ON true;
        END IF;
        v_off := floor(random() * v_nshards)::integer;
    END IF;

    <<attempt>>
    LOOP
        BEGIN
            v_total := v_free + v_back;
            v_granted := array_fill(0::bigint, ARRAY[v_nh]);
            v_last := array_fill(''::text, ARRAY[v_nh]);
            v_oc := array_fill(NULL::text, ARRAY[v_n]);
            v_avail := array_fill(NULL::bigint, ARRAY[v_n]);
            v_new := 0;
            FOR v_i IN 1 .. v_n LOOP
                v_j := p_prev[v_i];
                IF v_prior[v_i] OR (v_j > 0 AND v_oc[v_j] IN ('new', 'prior')) THEN
                    v_oc[v_i] := 'prior';
                ELSIF NOT v_known THEN
                    v_oc[v_i] := 'unknown';
                ELSIF v_disabled THEN
                    v_oc[v_i] := 'disabled';
                    v_avail[v_i] := v_snap;
                ELSE
                    v_q := p_qtys[v_i];
                    v_h := p_hidx[v_i];
                    IF v_locked AND v_limit > 0 AND v_units[v_h] - v_mine[v_h] + v_granted[v_h] + v_q > v_limit THEN
                        v_oc[v_i] := 'limit';
                        v_avail[v_i] := CASE WHEN p_shard < 0 THEN v_total ELSE v_snap END;
                    ELSIF v_locked AND v_total >= v_q THEN
                        v_oc[v_i] := 'new';
                        v_total := v_total - v_q;
                        v_granted[v_h] := v_granted[v_h] + v_q;
                        v_last[v_h] := p_ids[v_i];
                        v_new := v_new + 1;
                    ELSIF p_shard >= 0 AND v_snap >= v_q THEN
                        v_oc[v_i] := 'next';
                    ELSE
                        v_oc[v_i] := 'soldout';
                        v_avail[v_i] := CASE WHEN p_shard < 0 AND v_locked THEN v_total ELSE v_snap END;
                    END IF;
                END IF;
            END LOOP;

            IF v_new > 0 THEN
                WITH ins AS (
                    INSERT INTO {{.Reservations}} (id, item, holder, quantity, state, shard, counted, expires_at, created_at)
                    SELECT p_ids[k], p_item, p_holders[p_hidx[k]], p_qtys[k], 'held',
                           v_shards[1 + (k - 1 + v_off) % v_nshards], true,
                           v_ts + p_holds[k] * interval '1 microsecond', v_ts
                    FROM generate_subscripts(p_ids, 1) AS k
                    WHERE v_oc[k] = 'new'
                    ORDER BY p_ids[k] COLLATE "C"
                    ON CONFLICT (id) DO NOTHING
                    RETURNING id
                )
                SELECT coalesce(array_agg(ins.id), '{}') INTO v_inserted FROM ins;
                IF cardinality(v_inserted) < v_new THEN
                    SELECT array_agg(p_ids[k]) INTO v_conflicts
                    FROM generate_subscripts(p_ids, 1) AS k
                    WHERE v_oc[k] = 'new' AND p_ids[k] <> ALL (v_inserted);
                    RAISE SQLSTATE 'IQRB1';
                END IF;
            END IF;

            EXIT attempt;
        EXCEPTION WHEN SQLSTATE 'IQRB1' THEN
            -- Concurrent Reserves inserted these IDs first: decide again,
            -- with their requests answered as retries.
            SELECT array_agg(v_prior[k] OR p_ids[k] = ANY (v_conflicts) ORDER BY k) INTO v_prior
            FROM generate_subscripts(p_ids, 1) AS k;
        END;
    END LOOP;

    -- The holder rows, after the block rather than in it: a row that a
    -- block changes stays locked, for whoever waits for it, until the
    -- whole transaction ends, even if a savepoint around the call is
    -- rolled back (as the first step of a sharded Reserve in a caller's
    -- transaction is when it answers 'next'); and a row that the
    -- transaction locked (with a limit, above) and the block updates gets
    -- a MultiXact. They are locked in order (with a limit, they are
    -- already): units granted added, then the units that stopped counting
    -- taken off, so that no proposed row is negative.
    IF v_locked THEN
        INSERT INTO {{.Holders}} AS h (item, holder, units, last_id)
        SELECT p_item, x.holder, x.granted, x.last
        FROM unnest(p_holders, v_mine, v_granted, v_last) WITH ORDINALITY AS x(holder, mine, granted, last, pos)
        WHERE x.mine <> 0 OR x.granted <> 0
        ORDER BY x.pos
        ON CONFLICT (item, holder) DO UPDATE
        SET units = h.units + EXCLUDED.units,
            last_id = CASE WHEN EXCLUDED.last_id <> '' THEN EXCLUDED.last_id ELSE h.last_id END;
        IF v_anymine THEN
            FOR v_h IN 1 .. v_nh LOOP
                IF v_mine[v_h] <> 0 THEN
                    UPDATE {{.Holders}} h SET units = h.units - v_mine[v_h]
                    WHERE h.item = p_item AND h.holder = p_holders[v_h];
                END IF;
            END LOOP;
        END IF;
    END IF;

    -- The locked shards get what is left, after the block rather than in
    -- it: a row that a transaction has locked and one of its
    -- subtransactions (the block) updates gets a MultiXact, the lock and
    -- the update, as its locker, which every later statement that reads
    -- or waits for the item's hot rows would have to look up.
    IF v_locked AND (v_total <> v_free OR (p_shard < 0 AND v_nshards > 1)) THEN
        UPDATE {{.Shards}} s
        SET available = v_total / v_nshards
            + CASE WHEN (x.pos - 1 + v_off) % v_nshards < v_total % v_nshards THEN 1 ELSE 0 END
        FROM unnest(v_shards) WITH ORDINALITY AS x(shard, pos)
        WHERE s.item = p_item AND s.shard = x.shard;
    END IF;

    -- New reservations are answered from the request; the others' rows
    -- are read again, as they are now.
    RETURN QUERY
    SELECT v_oc[k],
           CASE WHEN v_oc[k] = 'new' THEN p_item ELSE r.item END,
           CASE WHEN v_oc[k] = 'new' THEN p_holders[p_hidx[k]] ELSE r.holder END,
           CASE WHEN v_oc[k] = 'new' THEN p_qtys[k] ELSE r.quantity END,
           CASE WHEN v_oc[k] = 'new' THEN 'held' ELSE r.state END,
           CASE WHEN v_oc[k] = 'new' THEN v_ts + p_holds[k] * interval '1 microsecond' ELSE r.expires_at END,
           r.codes,
           CASE WHEN v_oc[k] = 'new' THEN false ELSE r.expires_at <= v_ts END,
           v_avail[k],
           CASE WHEN v_oc[k] = 'disabled' THEN v_reason END
    FROM generate_subscripts(p_ids, 1) AS k
    LEFT JOIN LATERAL (
        SELECT x.item, x.holder, x.quantity, x.state, x.expires_at, x.codes FROM {{.Reservations}} x
        WHERE v_oc[k] = 'prior' AND x.id = p_ids[k]
        OFFSET 0
    ) r ON true
    ORDER BY k;
END
$fn$;

-- Reserve of one request on its own (Options.PerCall, outside a caller's
-- transaction): the common case in a few statements on rows found by key,
-- with the same locks in the same order as reserve_batch, answering one
-- row as reserve_batch does: 'new', or the answers that need no lock
-- ('prior', 'unknown', 'disabled', and 'soldout' on a snapshot), or else
-- 'full' for every other case, which it leaves to reserve_batch (then
-- nothing has changed but, with a limit, the holder's row may exist with
-- the units it had). It locks one shard, as reserve_batch does for
-- p_shard >= 0 (the statements are the same): one that no one else holds,
-- one with units first, p_shard first among equals, or, if all are held,
-- the best one once it is free. With a holder limit, it then locks the
-- holder's row and grants only if the units the row counts leave room
-- (reserve_batch also discounts ended reservations); without one, it
-- writes the holder's row after the new reservation's key, as
-- reserve_batch does. It takes back no
-- expired hold: a shard short of units answers 'soldout' only if a
-- snapshot of the whole item, expired holds included, is short too, and
-- 'full' otherwise.
--
-- An ID inserted by a concurrent Reserve after the check for a prior
-- reservation makes the insert fail with a unique violation, which aborts
-- the statement, and the caller then asks reserve_batch.
CREATE OR REPLACE FUNCTION {{.ReserveOne}}(
    p_item   text,
    p_shard  integer,
    p_holder text,
    p_id     text,
    p_qty    integer,
    p_hold   bigint)
RETURNS TABLE (o_outcome text, o_item text, o_holder text, o_quantity integer, o_state text,
               o_expires_at timestamptz, o_codes text[], o_due boolean, o_available bigint, o_reason text)
LANGUAGE plpgsql
-- As for reserve_batch: plans made once per connection, index lookups.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $fn$
DECLARE
    v_ts       timestamptz := statement_timestamp();
    v_known    boolean;
    v_limit    integer;
    v_disabled boolean;
    v_reason   text;
    v_shard    integer;
    v_free     bigint;
BEGIN
    -- The reservation the ID has, if any, answered as it is; the item.
    SELECT it.item IS NOT NULL, it.holder_limit, it.disabled, it.reason,
           r.item, r.holder, r.quantity, r.state, r.expires_at, r.codes, r.expires_at <= v_ts
    INTO v_known, v_limit, v_disabled, v_reason,
         o_item, o_holder, o_quantity, o_state, o_expires_at, o_codes, o_due
    FROM (SELECT) AS one
    LEFT JOIN {{.Items}} it ON it.item = p_item
    LEFT JOIN {{.Reservations}} r ON r.id = p_id;
    IF o_item IS NOT NULL THEN
        o_outcome := 'prior';
        RETURN NEXT;
        RETURN;
    ELSIF NOT v_known THEN
        o_outcome := 'unknown';
        RETURN NEXT;
        RETURN;
    END IF;

    IF NOT v_disabled THEN
        SELECT s.shard, s.available INTO v_shard, v_free
        FROM {{.Shards}} s
        WHERE s.item = p_item
        ORDER BY s.available >= p_qty DESC, s.shard = p_shard DESC, s.available DESC
        LIMIT 1
        FOR NO KEY UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            SELECT s.shard, s.available INTO v_shard, v_free
            FROM {{.Shards}} s
            WHERE s.item = p_item
              AND s.shard = (SELECT t.shard FROM {{.Shards}} t
                             WHERE t.item = p_item
                             ORDER BY t.available >= p_qty DESC, t.shard = p_shard DESC, t.available DESC
                             LIMIT 1)
            FOR NO KEY UPDATE;
        END IF;
        IF FOUND AND v_free >= p_qty THEN
            o_outcome := 'full';
            IF v_limit > 0 THEN
                INSERT INTO {{.Holders}} AS h (item, holder, units, last_id)
                VALUES (p_item, p_holder, 0, '')
                ON CONFLICT (item, holder) DO UPDATE SET units = h.units WHERE false;
                UPDATE {{.Holders}} h
                SET units = h.units + p_qty, last_id = p_id
                WHERE h.item = p_item AND h.holder = p_holder AND h.units + p_qty <= v_limit;
                IF NOT FOUND THEN
                    RETURN NEXT;
                    RETURN;
                END IF;
            END IF;

            o_expires_at := v_ts + p_hold * interval '1 microsecond';
            INSERT INTO {{.Reservations}} (id, item, holder, quantity, state, shard, counted, expires_at, created_at)
            VALUES (p_id, p_item, p_holder, p_qty, 'held', v_shard, true, o_expires_at, v_ts);
            IF v_limit = 0 THEN
                -- Without a limit, the holder's row after the new key, as
                -- in reserve_batch.
                INSERT INTO {{.Holders}} AS h (item, holder, units, last_id)
                VALUES (p_item, p_holder, p_qty, p_id)
                ON CONFLICT (item, holder) DO UPDATE
                SET units = h.units + EXCLUDED.units, last_id = EXCLUDED.last_id;
            END IF;
            UPDATE {{.Shards}} s
            SET available = s.available - p_qty
            WHERE s.item = p_item AND s.shard = v_shard;

            o_outcome := 'new';
            o_item := p_item;
            o_holder := p_holder;
            o_quantity := p_qty;
            o_state := 'held';
            o_due := false;
            RETURN NEXT;
            RETURN;
        END IF;
        IF v_limit > 0 THEN
            -- Short, and the holder's limit comes first: reserve_batch.
            o_outcome := 'full';
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;

    -- Disabled, or short with no limit: a snapshot of the item's free
    -- units and expired holds is the answer, as in reserve_batch.
    SELECT coalesce((SELECT sum(s.available) FROM {{.Shards}} s WHERE s.item = p_item), 0)
           + coalesce((SELECT sum(r.quantity) FROM {{.Reservations}} r
                       WHERE r.item = p_item AND r.state = 'held' AND r.expires_at <= v_ts), 0)
    INTO o_available;
    IF v_disabled THEN
        o_outcome := 'disabled';
        o_reason := v_reason;
    ELSIF o_available < p_qty THEN
        o_outcome := 'soldout';
    ELSE
        o_outcome := 'full';
        o_available := NULL;
    END IF;
    RETURN NEXT;
END
$fn$;
