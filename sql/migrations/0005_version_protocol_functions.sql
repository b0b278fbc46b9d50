-- Versioned protocol functions. The code calls each function by its versioned name and checks
-- at start-up that every one it needs exists. A migration that changes a function's signature or
-- meaning adds the next version beside this one, so code of the previous release keeps working
-- against the migrated schema; a later migration drops the old version once no deployment runs
-- it. Every function is one round trip and one transaction.

-- Acquire: grant a free lock, take over an expired one, or report the holder; write the job log
-- row (Processing for the winner, Exited for a loser when p_log_loss) in the same transaction.
CREATE FUNCTION dlock_acquire_v1(
    p_queue_name    text,
    p_job_name      text,
    p_owner         text,
    p_app_id        text,
    p_run_id        text,
    p_slot          text,
    p_lease_seconds double precision,
    p_log_loss      boolean,
    OUT acquired    boolean,
    OUT fence       bigint,
    OUT log_id      bigint,
    OUT reason      text,
    OUT holder      text,
    OUT since       timestamptz
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_lease       interval := make_interval(secs => p_lease_seconds);
    v_now         timestamptz;
    v_fence       bigint;
    v_log_id      bigint;
    v_lock        queue_locks%ROWTYPE;
    v_slot_status text;
    v_remark      text;
BEGIN
    acquired := false;

    -- A completed slot is refused before the lock row is touched (the unique index is the
    -- real guard below; this only spares the lock row a write).
    IF p_slot IS NOT NULL THEN
        SELECT l.app_id, l.updated_time INTO holder, since
          FROM job_logs l
         WHERE l.queue_name = p_queue_name AND l.job_name = p_job_name
           AND l.slot = p_slot AND l.claims_slot AND l.status = 'Completed';
        IF FOUND THEN
            reason := 'slot_done';
        END IF;
    END IF;

    IF reason IS NULL THEN
        -- Losers never lock or write the lock row: ON CONFLICT DO NOTHING, then a plain read.
        FOR attempt IN 1..5 LOOP
            v_now := clock_timestamp();
            -- The log row's id is drawn here so the lock row can point at it.
            INSERT INTO queue_locks AS q
                   (queue_name, job_name, created_time, owner, fence, log_id, expires_at)
            VALUES (p_queue_name, p_job_name, v_now, p_owner, nextval('queue_lock_fence_seq'),
                    nextval('job_logs_id_seq'), v_now + v_lease)
            ON CONFLICT DO NOTHING
            RETURNING q.fence, q.log_id INTO v_fence, v_log_id;
            IF v_fence IS NOT NULL THEN
                v_remark := format('Lock acquired (fence %s)', v_fence);
                EXIT;
            END IF;

            SELECT * INTO v_lock
              FROM queue_locks q
             WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name;
            CONTINUE WHEN NOT FOUND;  -- released between the insert and the read: try again
            EXIT WHEN v_lock.expires_at >= clock_timestamp();  -- held and live

            -- Expired: take over, conditional on the row being the one we read.
            v_now := clock_timestamp();
            UPDATE queue_locks q
               SET created_time = v_now, owner = p_owner,
                   fence = nextval('queue_lock_fence_seq'), log_id = nextval('job_logs_id_seq'),
                   expires_at = v_now + v_lease
             WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
               AND q.fence = v_lock.fence AND q.expires_at < v_now
            RETURNING q.fence, q.log_id INTO v_fence, v_log_id;
            IF v_fence IS NOT NULL THEN
                -- Close the previous holder's row first, so its slot may run again.
                UPDATE job_logs l
                   SET status = 'Exited', updated_time = v_now,
                       remark = l.remark || '; ' || format('Lease expired at %s without renewal (holder stopped or lost '
                                       'the database); taken over by %s (fence %s)',
                                       v_lock.expires_at, p_owner, v_fence)
                 WHERE l.id = v_lock.log_id AND l.status = 'Processing';
                v_remark := format('Lock taken over from %s, whose lease expired at %s (fence %s)',
                                   v_lock.owner, v_lock.expires_at, v_fence);
                EXIT;
            END IF;
        END LOOP;

        IF v_fence IS NOT NULL THEN
            FOR attempt IN 1..2 LOOP
                INSERT INTO job_logs AS l
                       (id, app_id, queue_name, job_name, status, remark, run_id, fence, slot,
                        created_time, updated_time)
                VALUES (v_log_id, p_app_id, p_queue_name, p_job_name, 'Processing', v_remark,
                        p_run_id, v_fence, p_slot, v_now, v_now)
                ON CONFLICT (queue_name, job_name, slot) WHERE claims_slot DO NOTHING
                RETURNING l.id INTO log_id;
                IF log_id IS NOT NULL THEN
                    acquired := true;
                    fence := v_fence;
                    holder := p_owner;
                    since := v_now;
                    RETURN;
                END IF;
                -- We hold the lock, so a Processing row of this slot has no live holder: its
                -- lock row was deleted by hand. Close it, so the slot is not stuck forever.
                UPDATE job_logs l
                   SET status = 'Exited', updated_time = clock_timestamp(),
                       remark = l.remark || '; ' || format('Its lock row was gone (deleted by '
                                'hand?); slot released by %s (fence %s)', p_owner, v_fence)
                 WHERE l.queue_name = p_queue_name AND l.job_name = p_job_name
                   AND l.slot = p_slot AND l.claims_slot AND l.status = 'Processing';
                EXIT WHEN NOT FOUND;
            END LOOP;

            -- The slot finished between the first look and now: give the lock back.
            DELETE FROM queue_locks q
             WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name AND q.fence = v_fence;
            SELECT l.status, l.app_id, l.updated_time INTO v_slot_status, holder, since
              FROM job_logs l
             WHERE l.queue_name = p_queue_name AND l.job_name = p_job_name
               AND l.slot = p_slot AND l.claims_slot;
            reason := CASE WHEN v_slot_status = 'Completed' THEN 'slot_done' ELSE 'slot_running' END;
        ELSE
            reason := 'held';
            holder := v_lock.owner;
            since := v_lock.created_time;
            IF p_slot IS NOT NULL AND EXISTS (
                SELECT 1 FROM job_logs l
                 WHERE l.id = v_lock.log_id AND l.slot = p_slot AND l.status = 'Processing'
            ) THEN
                reason := 'slot_running';
            END IF;
        END IF;
    END IF;

    IF p_log_loss THEN
        INSERT INTO job_logs AS l (app_id, queue_name, job_name, status, remark, run_id, slot)
        VALUES (p_app_id, p_queue_name, p_job_name, 'Exited',
                CASE reason
                    WHEN 'slot_done' THEN format('Not run: slot %s was already completed by %s at %s',
                                                 p_slot, holder, since)
                    WHEN 'slot_running' THEN format('Not run: slot %s is being processed by %s since %s',
                                                    p_slot, holder, since)
                    ELSE format('Not run: lock held by %s since %s', holder, since)
                END,
                p_run_id, p_slot)
        RETURNING l.id INTO log_id;
    END IF;
END
$$;

-- Release: delete our lock row and close our log row in one transaction, both checked against
-- owner and fence. Returns false when the lease was lost (someone took over): nothing of the
-- successor's is touched, and our row never claims the final status.
CREATE FUNCTION dlock_release_v1(
    p_queue_name text,
    p_job_name   text,
    p_owner      text,
    p_fence      bigint,
    p_log_id     bigint,
    p_status     text,
    p_remark     text
)
RETURNS boolean
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
BEGIN
    DELETE FROM queue_locks q
     WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
       AND q.owner = p_owner AND q.fence = p_fence;
    IF FOUND THEN
        UPDATE job_logs l
           SET status = p_status, remark = l.remark || '; ' || p_remark,
               updated_time = clock_timestamp()
         WHERE l.id = p_log_id AND l.status = 'Processing' AND l.fence = p_fence;
        RETURN true;
    END IF;

    -- The taker normally closed our row already; close it here only if nobody did.
    UPDATE job_logs l
       SET status = 'Exited', updated_time = clock_timestamp(),
           remark = l.remark || '; ' || format('Lease lost before the body finished (it ended as %s: %s)',
                           p_status, p_remark)
     WHERE l.id = p_log_id AND l.status = 'Processing' AND l.fence = p_fence;
    RETURN false;
END
$$;

-- Abandon: an interrupt landed while acquire was in flight, so the caller does not know whether
-- it holds the lock. Release whatever this owner holds and record one Exited row.
CREATE FUNCTION dlock_abandon_v1(
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
    DELETE FROM queue_locks q
     WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name AND q.owner = p_owner
    RETURNING q.log_id INTO v_log_id;
    IF v_log_id IS NOT NULL THEN
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

-- Renew: push the lease end out, only for the holder with this owner and fence. False means
-- the lock was taken over (or released).
CREATE FUNCTION dlock_renew_v1(
    p_queue_name    text,
    p_job_name      text,
    p_owner         text,
    p_fence         bigint,
    p_lease_seconds double precision
)
RETURNS boolean
LANGUAGE sql
AS $$
    WITH renewed AS (
        UPDATE queue_locks q
           SET expires_at = clock_timestamp() + make_interval(secs => p_lease_seconds)
         WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
           AND q.owner = p_owner AND q.fence = p_fence
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM renewed)
$$;

-- Still held: whether the holder with this owner and fence still has the lock (ensure_held()).
CREATE FUNCTION dlock_still_held_v1(
    p_queue_name text,
    p_job_name   text,
    p_owner      text,
    p_fence      bigint
)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (
        SELECT 1 FROM queue_locks q
         WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
           AND q.owner = p_owner AND q.fence = p_fence
    )
$$;

-- The unversioned names are what release 0.1.0 calls. They keep their meaning by delegating to
-- version 1 until a later release, once no deployment runs 0.1.0, drops them together with
-- dlock_schema_version().
CREATE OR REPLACE FUNCTION dlock_acquire(
    p_queue_name    text,
    p_job_name      text,
    p_owner         text,
    p_app_id        text,
    p_run_id        text,
    p_slot          text,
    p_lease_seconds double precision,
    p_log_loss      boolean,
    OUT acquired    boolean,
    OUT fence       bigint,
    OUT log_id      bigint,
    OUT reason      text,
    OUT holder      text,
    OUT since       timestamptz
)
LANGUAGE sql
AS $$
    SELECT * FROM dlock_acquire_v1(p_queue_name, p_job_name, p_owner, p_app_id, p_run_id, p_slot,
                                   p_lease_seconds, p_log_loss)
$$;

CREATE OR REPLACE FUNCTION dlock_release(
    p_queue_name text,
    p_job_name   text,
    p_owner      text,
    p_fence      bigint,
    p_log_id     bigint,
    p_status     text,
    p_remark     text
)
RETURNS boolean
LANGUAGE sql
AS $$
    SELECT dlock_release_v1(p_queue_name, p_job_name, p_owner, p_fence, p_log_id, p_status,
                            p_remark)
$$;

CREATE OR REPLACE FUNCTION dlock_abandon(
    p_queue_name text,
    p_job_name   text,
    p_owner      text,
    p_app_id     text,
    p_run_id     text,
    p_slot       text,
    p_remark     text
)
RETURNS void
LANGUAGE sql
AS $$
    SELECT dlock_abandon_v1(p_queue_name, p_job_name, p_owner, p_app_id, p_run_id, p_slot,
                            p_remark)
$$;
