-- Version 3 of acquire and release: the same decisions as version 2 at a fraction of the
-- server's work in the common case, a free lock and an owner releasing its own grant.
--
-- Version 2 strings helpers together: a plpgsql bound check, a SQL function for the completed
-- slot (planned anew on every call: a SQL function called in FROM is not inlined), and the
-- claim of the lock row as a set-returning plpgsql function, each its own executor run. Version
-- 3 first tries the one case that needs none of them, in as few statements as it can, and
-- hands everything else to version 2 unchanged:
--
-- * acquire: if the lock row exists and is free (owner NULL), claim it with one conditional
--   UPDATE that draws the fence while it holds the row (as dlock_claim_lock_v1's does), then
--   write the Processing row, which claims the slot. The answer is version 2's for that case.
--   A completed slot is still refused before the lock row is touched. Anything else (no row
--   yet, a live holder, a lapsed lease to take over, a repeated call by the same owner, a slot
--   taken between the first look and the claim) goes to dlock_acquire_v2, which decides it as
--   before; in the last case the lock row is given back first, as version 2 itself does.
-- * release: free the lock row and close the log row in one statement (two data-modifying
--   parts, both checked against owner and fence); if the lock row was not ours, version 2 says
--   whether this very release already happened or the lease was lost.
--
-- Version 2 stays: it is version 3's path for every other case (a migration that drops it
-- must replace version 3 first), and code of the release before this one calls it.

CREATE FUNCTION dlock_acquire_v3(
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
    v_at       timestamptz;
    v_fence    bigint;
    v_log_id   bigint;
    v_inserted bigint;
BEGIN
    -- The fast path: a valid lease, a free lock row, and (with a slot) a slot nobody completed.
    -- One statement claims the row, drawing the fence while it holds it, and writes the
    -- Processing row, which claims the slot.
    IF p_lease_seconds > 0 AND p_lease_seconds <= 86400 THEN
        v_at := clock_timestamp();
        IF p_slot IS NULL THEN
            WITH claimed AS (
                UPDATE queue_locks q
                   SET created_time = v_at, owner = p_owner,
                       fence = nextval('queue_lock_fence_seq'),
                       log_id = nextval('job_logs_id_seq'),
                       expires_at = v_at + make_interval(secs => p_lease_seconds)
                 WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
                   AND q.owner IS NULL
                RETURNING q.fence, q.log_id
            )
            INSERT INTO job_logs AS l
                   (id, app_id, queue_name, job_name, status, remark, run_id, fence, slot,
                    created_time, updated_time)
            SELECT c.log_id, p_app_id, p_queue_name, p_job_name, 'Processing',
                   format('Lock acquired (fence %s)', c.fence), p_run_id, c.fence, NULL, v_at,
                   v_at
              FROM claimed c
            RETURNING l.fence, l.id INTO v_fence, v_log_id;
            v_inserted := v_log_id;
        ELSIF NOT EXISTS (
            SELECT 1 FROM job_logs l
             WHERE l.queue_name = p_queue_name AND l.job_name = p_job_name
               AND l.slot = p_slot AND l.claims_slot AND l.status = 'Completed'
        ) THEN
            WITH claimed AS (
                UPDATE queue_locks q
                   SET created_time = v_at, owner = p_owner,
                       fence = nextval('queue_lock_fence_seq'),
                       log_id = nextval('job_logs_id_seq'),
                       expires_at = v_at + make_interval(secs => p_lease_seconds)
                 WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
                   AND q.owner IS NULL
                RETURNING q.fence, q.log_id
            ), written AS (
                INSERT INTO job_logs AS l
                       (id, app_id, queue_name, job_name, status, remark, run_id, fence, slot,
                        created_time, updated_time)
                SELECT c.log_id, p_app_id, p_queue_name, p_job_name, 'Processing',
                       format('Lock acquired (fence %s)', c.fence), p_run_id, c.fence, p_slot,
                       v_at, v_at
                  FROM claimed c
                ON CONFLICT (queue_name, job_name, slot) WHERE claims_slot DO NOTHING
                RETURNING l.id
            )
            SELECT c.fence, c.log_id, (SELECT w.id FROM written w)
              INTO v_fence, v_log_id, v_inserted
              FROM claimed c;
        END IF;
        IF v_inserted IS NOT NULL THEN
            acquired := true;
            fence := v_fence;
            log_id := v_log_id;
            holder := dlock_holder_v1(p_owner);
            since := v_at;
            RETURN;
        ELSIF v_fence IS NOT NULL THEN
            -- The slot finished or started meanwhile: give the lock back; version 2 reports it.
            UPDATE queue_locks q
               SET owner = NULL, log_id = NULL, expires_at = clock_timestamp()
             WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
               AND q.fence = v_fence;
        END IF;
    END IF;
    SELECT * INTO acquired, fence, log_id, reason, holder, since, completed_at, note
      FROM dlock_acquire_v2(p_queue_name, p_job_name, p_owner, p_app_id, p_run_id, p_slot,
                            p_lease_seconds, p_record_loser);
END
$$;

CREATE FUNCTION dlock_release_v3(
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
DECLARE
    v_freed boolean;
BEGIN
    WITH freed AS (
        UPDATE queue_locks q
           SET owner = NULL, log_id = NULL, expires_at = clock_timestamp()
         WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
           AND q.owner = p_owner AND q.fence = p_fence
        RETURNING q.fence
    ), closed AS (
        UPDATE job_logs l
           SET status = p_status, remark = l.remark || '; ' || p_remark,
               updated_time = clock_timestamp()
          FROM freed
         WHERE l.id = p_log_id AND l.status = 'Processing' AND l.fence = freed.fence
    )
    SELECT true INTO v_freed FROM freed;
    IF v_freed THEN
        RETURN 'released';
    END IF;
    RETURN dlock_release_v2(p_queue_name, p_job_name, p_owner, p_fence, p_log_id, p_status,
                            p_remark);
END
$$;

-- Like the other protocol functions (0007): run as their owner with a pinned search_path;
-- only the roles granted them may call them (sql/roles.sql: dlock_user).
DO $$
DECLARE
    v_function regprocedure;
BEGIN
    FOREACH v_function IN ARRAY ARRAY[
        'dlock_acquire_v3(text, text, text, text, text, text, double precision, boolean)',
        'dlock_release_v3(text, text, text, bigint, bigint, text, text)'
    ]::regprocedure[] LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp',
                       v_function, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_function);
    END LOOP;
END
$$;
