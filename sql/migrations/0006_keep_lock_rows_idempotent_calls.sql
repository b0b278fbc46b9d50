-- Version 2 of acquire, release and abandon, and batched renewal, for a lock in a long-lived
-- process under faults. Version 1 stays for code of release 0.2.0 (see 0005).
--
-- * A lock row is kept once made: release frees it (owner and log_id NULL, expires_at the
--   release time) instead of deleting it. Every later grant is a conditional UPDATE of that one
--   row, which draws its fence only once it holds the row, so the later grant of a lock always
--   carries the higher fence. (An INSERT draws its fence before the conflict check: one that
--   waited on a concurrent insert could be granted after a higher fence was granted and freed.)
-- * Every call is idempotent for its owner, so a call whose reply was lost after the commit can
--   be sent again: a repeated acquire returns the grant it already has, a repeated release
--   reports what the first one did.
-- * Renewal renews many leases in one call and never waits on a row another transaction holds
--   (SKIP LOCKED): one blocked lock cannot stall the leases of the others.
-- * The functions check their own bounds (a lease of at most 86,400 s).
--
-- Version 1 code copes with kept rows: to it a free row is an expired one, which it takes over.

ALTER TABLE queue_locks
    ALTER COLUMN owner DROP NOT NULL,
    ALTER COLUMN log_id DROP NOT NULL;

-- A holder as reported and written into remarks: the owner without its last part, the random
-- token that proves ownership (renewing or releasing needs it, so it is never shown).
CREATE FUNCTION dlock_holder_v1(p_owner text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT regexp_replace(p_owner, '/[^/]*$', '') $$;

-- The longest lease the code allows; the functions refuse anything longer.
CREATE FUNCTION dlock_check_lease_v1(p_lease_seconds double precision) RETURNS interval
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF p_lease_seconds IS NULL OR NOT (p_lease_seconds > 0 AND p_lease_seconds <= 86400) THEN
        RAISE EXCEPTION 'lease_seconds must be greater than 0 and at most 86400, got %',
            p_lease_seconds USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN make_interval(secs => p_lease_seconds);
END
$$;

-- Acquire is split into helpers that run in the caller's transaction (one round trip still):
-- the slot's completion, the claim of the lock row, the claim of the slot, and the loser's
-- note. dlock_acquire_v2 only strings them together.

-- Who completed this slot (app id and run id), when it started and when it completed, if
-- anyone did (NULLs if not).
CREATE FUNCTION dlock_completed_slot_v1(
    p_queue_name     text,
    p_job_name       text,
    p_slot           text,
    OUT holder       text,
    OUT since        timestamptz,
    OUT completed_at timestamptz
)
LANGUAGE sql STABLE
AS $$
    SELECT l.app_id || '/' || coalesce(l.run_id, '-'), l.created_time, l.updated_time
      FROM job_logs l
     WHERE l.queue_name = p_queue_name AND l.job_name = p_job_name
       AND l.slot = p_slot AND l.claims_slot AND l.status = 'Completed'
$$;

-- Claim the lock row for p_owner, or learn who holds it. Losers only read the row: they never
-- lock it or wait on it. A free or lapsed row is claimed with a conditional UPDATE that draws
-- the fence while it holds the row, after any earlier grant of it committed; a lock never used
-- is inserted, and its fence drawn again once the row is ours (one drawn in VALUES may predate
-- a concurrent grant this insert waited on). `ours` says p_owner already held it (a repeated
-- call whose first reply was lost). Retry bound: a pass that decides nothing follows another
-- transaction's committed change to this very row between our read and our write (a grant, a
-- release, a first insert); five in one call means heavy churn, and the last holder read is
-- reported then.
CREATE FUNCTION dlock_claim_lock_v1(
    p_queue_name       text,
    p_job_name         text,
    p_owner            text,
    p_lease            interval,
    OUT fence          bigint,
    OUT log_id         bigint,
    OUT claimed_at     timestamptz,
    OUT remark         text,
    OUT ours           boolean,
    OUT holder         text,
    OUT holder_since   timestamptz,
    OUT holder_log_id  bigint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_lock queue_locks%ROWTYPE;
BEGIN
    ours := false;
    FOR attempt IN 1..5 LOOP
        SELECT * INTO v_lock
          FROM queue_locks q
         WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name;

        IF NOT FOUND THEN
            claimed_at := clock_timestamp();
            INSERT INTO queue_locks AS q
                   (queue_name, job_name, created_time, owner, fence, log_id, expires_at)
            VALUES (p_queue_name, p_job_name, claimed_at, p_owner, 0,
                    nextval('job_logs_id_seq'), claimed_at + p_lease)
            ON CONFLICT DO NOTHING
            RETURNING q.log_id INTO log_id;
            IF log_id IS NOT NULL THEN
                UPDATE queue_locks q SET fence = nextval('queue_lock_fence_seq')
                 WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
                RETURNING q.fence INTO fence;
                remark := format('Lock acquired (fence %s)', fence);
                RETURN;
            END IF;
            CONTINUE;  -- someone else made the row meanwhile: read it
        END IF;

        IF v_lock.owner = p_owner THEN
            ours := true;
            fence := v_lock.fence;
            log_id := v_lock.log_id;
            claimed_at := v_lock.created_time;
            RETURN;
        END IF;

        holder := dlock_holder_v1(v_lock.owner);
        holder_since := v_lock.created_time;
        holder_log_id := v_lock.log_id;
        IF v_lock.owner IS NOT NULL AND v_lock.expires_at >= clock_timestamp() THEN
            RETURN;  -- held and live
        END IF;

        claimed_at := clock_timestamp();
        UPDATE queue_locks q
           SET created_time = claimed_at, owner = p_owner,
               fence = nextval('queue_lock_fence_seq'), log_id = nextval('job_logs_id_seq'),
               expires_at = claimed_at + p_lease
         WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
           AND q.fence = v_lock.fence
           AND (q.owner IS NULL OR q.expires_at < claimed_at)
        RETURNING q.fence, q.log_id INTO fence, log_id;
        IF fence IS NOT NULL THEN
            holder := NULL;
            holder_since := NULL;
            holder_log_id := NULL;
            IF v_lock.owner IS NULL THEN
                remark := format('Lock acquired (fence %s)', fence);
            ELSE
                -- Close the previous holder's row first, so its slot may run again.
                UPDATE job_logs l
                   SET status = 'Exited', updated_time = claimed_at,
                       remark = l.remark || '; ' || format('Lease expired at %s without renewal '
                                '(holder stopped or lost the database); taken over by %s '
                                '(fence %s)', v_lock.expires_at, dlock_holder_v1(p_owner), fence)
                 WHERE l.id = v_lock.log_id AND l.status = 'Processing';
                remark := format('Lock taken over from %s, whose lease expired at %s (fence %s)',
                                 dlock_holder_v1(v_lock.owner), v_lock.expires_at, fence);
            END IF;
            RETURN;
        END IF;
    END LOOP;
END
$$;

-- Write the holder's Processing row, which claims the slot; false if the slot is taken (done,
-- or running under another row). Retry bound: one more pass, after closing a Processing row of
-- this slot whose lock row was deleted by hand (we hold the lock, so that row has no live
-- holder); a second conflict is a real claim.
CREATE FUNCTION dlock_claim_slot_v1(
    p_queue_name text,
    p_job_name   text,
    p_owner      text,
    p_app_id     text,
    p_run_id     text,
    p_slot       text,
    p_fence      bigint,
    p_log_id     bigint,
    p_remark     text,
    p_at         timestamptz
)
RETURNS boolean
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_log_id bigint;
BEGIN
    FOR attempt IN 1..2 LOOP
        INSERT INTO job_logs AS l
               (id, app_id, queue_name, job_name, status, remark, run_id, fence, slot,
                created_time, updated_time)
        VALUES (p_log_id, p_app_id, p_queue_name, p_job_name, 'Processing', p_remark,
                p_run_id, p_fence, p_slot, p_at, p_at)
        ON CONFLICT (queue_name, job_name, slot) WHERE claims_slot DO NOTHING
        RETURNING l.id INTO v_log_id;
        IF v_log_id IS NOT NULL THEN
            RETURN true;
        END IF;
        UPDATE job_logs l
           SET status = 'Exited', updated_time = clock_timestamp(),
               remark = l.remark || '; ' || format('Its lock row was gone (deleted by '
                        'hand?); slot released by %s (fence %s)', dlock_holder_v1(p_owner),
                        p_fence)
         WHERE l.queue_name = p_queue_name AND l.job_name = p_job_name
           AND l.slot = p_slot AND l.claims_slot AND l.status = 'Processing';
        EXIT WHEN NOT FOUND;
    END LOOP;
    RETURN false;
END
$$;

-- Why a caller did not get the lock, in words an operator understands: the one wording, used
-- for the loser's Exited row ('Not run: ' and this) and returned to the caller as its note.
CREATE FUNCTION dlock_not_acquired_note_v1(
    p_reason       text,
    p_slot         text,
    p_holder       text,
    p_since        timestamptz,
    p_completed_at timestamptz
)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE p_reason
        WHEN 'slot_done' THEN format('slot %s was already completed by %s at %s',
                                     p_slot, p_holder, p_completed_at)
        WHEN 'slot_running' THEN format('slot %s is being processed by %s since %s',
                                        p_slot, p_holder, p_since)
        ELSE format('lock held by %s since %s', p_holder, p_since)
    END
$$;

-- Acquire: grant a free, new or lapsed lock, or report its holder; write the job log row
-- (Processing for the winner, Exited for a loser when p_record_loser) in the same transaction.
-- holder is always the app id and run id of whoever has the lock or the slot, since when that
-- holder started, completed_at when a done slot completed; note says it in words.
CREATE FUNCTION dlock_acquire_v2(
    p_queue_name    text,
    p_job_name      text,
    p_owner         text,
    p_app_id        text,
    p_run_id        text,
    p_slot          text,
    p_lease_seconds double precision,
    p_record_loser  boolean,
    OUT acquired     boolean,
    OUT fence        bigint,
    OUT log_id       bigint,
    OUT reason       text,
    OUT holder       text,
    OUT since        timestamptz,
    OUT completed_at timestamptz,
    OUT note         text
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_lease interval := dlock_check_lease_v1(p_lease_seconds);
    v_claim record;
BEGIN
    acquired := false;

    -- A completed slot is refused before the lock row is touched (the unique index is the
    -- real guard in dlock_claim_slot_v1; this only spares the lock row a write).
    IF p_slot IS NOT NULL THEN
        SELECT d.holder, d.since, d.completed_at INTO holder, since, completed_at
          FROM dlock_completed_slot_v1(p_queue_name, p_job_name, p_slot) d;
        IF holder IS NOT NULL THEN
            reason := 'slot_done';
        END IF;
    END IF;

    IF reason IS NULL THEN
        SELECT * INTO v_claim FROM dlock_claim_lock_v1(p_queue_name, p_job_name, p_owner, v_lease);
        IF v_claim.ours THEN
            -- The same owner again: its first call's reply was lost. Return that grant.
            acquired := true;
            fence := v_claim.fence;
            log_id := v_claim.log_id;
            holder := dlock_holder_v1(p_owner);
            since := v_claim.claimed_at;
            RETURN;
        ELSIF v_claim.fence IS NOT NULL THEN
            IF p_slot IS NULL OR dlock_claim_slot_v1(p_queue_name, p_job_name, p_owner, p_app_id,
                    p_run_id, p_slot, v_claim.fence, v_claim.log_id, v_claim.remark,
                    v_claim.claimed_at) THEN
                IF p_slot IS NULL THEN
                    INSERT INTO job_logs
                           (id, app_id, queue_name, job_name, status, remark, run_id, fence,
                            slot, created_time, updated_time)
                    VALUES (v_claim.log_id, p_app_id, p_queue_name, p_job_name, 'Processing',
                            v_claim.remark, p_run_id, v_claim.fence, NULL, v_claim.claimed_at,
                            v_claim.claimed_at);
                END IF;
                acquired := true;
                fence := v_claim.fence;
                log_id := v_claim.log_id;
                holder := dlock_holder_v1(p_owner);
                since := v_claim.claimed_at;
                RETURN;
            END IF;
            -- The slot finished or started between the first look and now: give the lock back.
            UPDATE queue_locks q
               SET owner = NULL, log_id = NULL, expires_at = clock_timestamp()
             WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
               AND q.fence = v_claim.fence;
            SELECT l.app_id || '/' || coalesce(l.run_id, '-'), l.created_time,
                   CASE WHEN l.status = 'Completed' THEN l.updated_time END,
                   CASE WHEN l.status = 'Completed' THEN 'slot_done' ELSE 'slot_running' END
              INTO holder, since, completed_at, reason
              FROM job_logs l
             WHERE l.queue_name = p_queue_name AND l.job_name = p_job_name
               AND l.slot = p_slot AND l.claims_slot;
            reason := coalesce(reason, 'slot_running');
        ELSE
            reason := 'held';
            holder := v_claim.holder;
            since := v_claim.holder_since;
            IF p_slot IS NOT NULL AND EXISTS (
                SELECT 1 FROM job_logs l
                 WHERE l.id = v_claim.holder_log_id AND l.slot = p_slot
                   AND l.status = 'Processing'
            ) THEN
                reason := 'slot_running';
            END IF;
        END IF;
    END IF;

    note := dlock_not_acquired_note_v1(reason, p_slot, holder, since, completed_at);
    IF p_record_loser THEN
        INSERT INTO job_logs AS l (app_id, queue_name, job_name, status, remark, run_id, slot)
        VALUES (p_app_id, p_queue_name, p_job_name, 'Exited', 'Not run: ' || note, p_run_id,
                p_slot)
        RETURNING l.id INTO log_id;
    END IF;
END
$$;

-- Release: free our lock row and close our log row in one transaction, both checked against
-- owner and fence. Returns 'released', or 'lost' when someone took over (nothing of the
-- successor's is touched, and our row never claims the final status). A repeated call whose
-- first reply was lost finds its own ending in the log row and says 'released' again.
CREATE FUNCTION dlock_release_v2(
    p_queue_name text,
    p_job_name   text,
    p_owner      text,
    p_fence      bigint,
    p_log_id     bigint,
    p_status     text,
    p_remark     text
)
RETURNS text
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
BEGIN
    UPDATE queue_locks q
       SET owner = NULL, log_id = NULL, expires_at = clock_timestamp()
     WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
       AND q.owner = p_owner AND q.fence = p_fence;
    IF FOUND THEN
        UPDATE job_logs l
           SET status = p_status, remark = l.remark || '; ' || p_remark,
               updated_time = clock_timestamp()
         WHERE l.id = p_log_id AND l.status = 'Processing' AND l.fence = p_fence;
        RETURN 'released';
    END IF;

    IF EXISTS (
        SELECT 1 FROM job_logs l
         WHERE l.id = p_log_id AND l.fence = p_fence AND l.status = p_status
           AND right(l.remark, length(p_remark) + 2) = '; ' || p_remark
    ) THEN
        RETURN 'released';  -- this very release already happened
    END IF;

    -- The taker normally closed our row already; close it here only if nobody did, and only
    -- once the lock no longer carries this fence: a caller without the owner token must not
    -- close the live holder's row (fence and log id are readable by any lock user).
    UPDATE job_logs l
       SET status = 'Exited', updated_time = clock_timestamp(),
           remark = l.remark || '; ' || format('Lease lost before the body finished (it ended '
                    'as %s: %s)', p_status, p_remark)
     WHERE l.id = p_log_id AND l.status = 'Processing' AND l.fence = p_fence
       AND NOT EXISTS (SELECT 1 FROM queue_locks q
                        WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
                          AND q.fence = p_fence);
    RETURN 'lost';
END
$$;

-- Abandon: an interrupt or a failure landed while acquire was in flight, so the caller does
-- not know whether it holds the lock. Free whatever this owner holds and record one Exited row.
CREATE FUNCTION dlock_abandon_v2(
    p_queue_name text,
    p_job_name   text,
    p_owner      text,
    p_app_id     text,
    p_run_id     text,
    p_slot       text,
    p_remark     text
)
RETURNS void
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_log_id bigint;
BEGIN
    SELECT q.log_id INTO v_log_id
      FROM queue_locks q
     WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name AND q.owner = p_owner
       FOR UPDATE;
    IF FOUND THEN
        UPDATE queue_locks q
           SET owner = NULL, log_id = NULL, expires_at = clock_timestamp()
         WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name;
        UPDATE job_logs l
           SET status = 'Exited', remark = l.remark || '; ' || p_remark,
               updated_time = clock_timestamp()
         WHERE l.id = v_log_id AND l.status = 'Processing';
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    INSERT INTO job_logs (app_id, queue_name, job_name, status, remark, run_id, slot)
    VALUES (p_app_id, p_queue_name, p_job_name, 'Exited', p_remark, p_run_id, p_slot);
END
$$;

-- Renew many leases in one round trip. A row another transaction holds (an operator's open
-- transaction, a taker mid-way) is skipped as 'busy' and tried again soon, so one blocked lock
-- never delays the others; 'lost' means owner or fence no longer match (taken over).
CREATE FUNCTION dlock_renew_all_v1(
    p_queue_names   text[],
    p_job_names     text[],
    p_owners        text[],
    p_fences        bigint[],
    p_lease_seconds double precision[]
)
RETURNS TABLE (lease_index integer, outcome text)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
BEGIN
    FOR i IN 1..coalesce(array_length(p_owners, 1), 0) LOOP
        lease_index := i;
        PERFORM 1 FROM queue_locks q
          WHERE q.queue_name = p_queue_names[i] AND q.job_name = p_job_names[i]
            AND q.owner = p_owners[i] AND q.fence = p_fences[i]
            FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            UPDATE queue_locks q
               SET expires_at = clock_timestamp() + dlock_check_lease_v1(p_lease_seconds[i])
             WHERE q.queue_name = p_queue_names[i] AND q.job_name = p_job_names[i];
            outcome := 'renewed';
        ELSIF EXISTS (
            SELECT 1 FROM queue_locks q
             WHERE q.queue_name = p_queue_names[i] AND q.job_name = p_job_names[i]
               AND q.owner = p_owners[i] AND q.fence = p_fences[i]
        ) THEN
            outcome := 'busy';
        ELSE
            outcome := 'lost';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- For fenced writes: whether this fence is the lock's current grant (held, not freed, not
-- taken over). Needs no owner token.
CREATE FUNCTION dlock_fence_is_current_v1(
    p_queue_name text,
    p_job_name   text,
    p_fence      bigint
)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (
        SELECT 1 FROM queue_locks q
         WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
           AND q.fence = p_fence AND q.owner IS NOT NULL
    )
$$;
