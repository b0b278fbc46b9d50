-- Operating the lock: reading the job log by job and time, an operator's release that a live
-- holder learns about (who released it and why), and pruning old job log rows in batches.

-- `dlock logs --job J [--since T]` reads newest first by job and time, fast with millions of
-- rows. None of these columns is ever updated (status and updated_time are not indexed), so
-- Processing -> Completed stays a HOT update. Built inside the migration's transaction: writes
-- to job_logs wait while it builds (about a second per million rows).
CREATE INDEX job_logs_job_time ON job_logs (job_name, created_time, id);

-- An operator's release (`dlock release`): frees the lock on purpose and closes its holder's
-- Processing row as Exited (so its slot may run again), naming the operator and the reason; a
-- holder still alive learns it from dlock_operator_release_note_v1 at its next ensure_held() or
-- release. With p_fence it acts only while the lock still carries that fence (the grant the
-- operator saw in `dlock status`); with NULL (--force) it frees whatever holds the lock. Once
-- the lock is free no Processing row of it has a live holder, so any other one (stuck after its
-- lock row was deleted by hand) is closed as well. One audit row (Exited, its app_id the
-- operator) records it.
-- outcome: 'released'; 'fence_moved' (another grant holds the lock now: nothing is touched;
-- fence and holder say which); 'not_held' (nobody holds it, and with --force no stuck row of
-- it was found either: nothing is touched); 'already_released' (a repeated call whose first
-- reply was lost: its audit row is there and the lock is still free at that fence).
CREATE FUNCTION dlock_operator_release_v1(
    p_queue_name text,
    p_job_name   text,
    p_fence      bigint,
    p_operator   text,
    p_reason     text,
    OUT outcome  text,
    OUT fence    bigint,
    OUT holder   text,
    OUT closed   integer,
    OUT audit_id bigint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_lock queue_locks%ROWTYPE;
    v_note text;
    v_slot text;
    v_ids  bigint[];
BEGIN
    IF coalesce(btrim(p_operator), '') = '' OR coalesce(btrim(p_reason), '') = '' THEN
        RAISE EXCEPTION 'dlock_operator_release_v1 needs the operator and a reason'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    closed := 0;
    v_note := format('Released by operator %s (database role %s): %s',
                     p_operator, session_user, p_reason);

    SELECT * INTO v_lock
      FROM queue_locks q
     WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
       FOR UPDATE;
    fence := v_lock.fence;
    holder := dlock_holder_v1(v_lock.owner);

    IF v_lock.owner IS NULL THEN
        SELECT l.id INTO audit_id
          FROM job_logs l
         WHERE l.queue_name = p_queue_name AND l.job_name = p_job_name
           AND l.app_id = p_operator AND l.status = 'Exited'
           AND l.fence IS NOT DISTINCT FROM v_lock.fence
           AND (p_fence IS NULL OR l.fence = p_fence)
           AND strpos(l.remark, v_note) = 1
         ORDER BY l.id DESC
         LIMIT 1;
        IF audit_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM job_logs l
             WHERE l.job_name = p_job_name AND l.queue_name = p_queue_name
               AND l.status = 'Processing'
        ) THEN
            outcome := 'already_released';  -- this very release happened before
            RETURN;
        END IF;
        audit_id := NULL;
    END IF;

    IF p_fence IS NOT NULL AND v_lock.owner IS NULL THEN
        outcome := 'not_held';
        RETURN;
    END IF;
    IF p_fence IS NOT NULL AND v_lock.fence <> p_fence THEN
        outcome := 'fence_moved';
        RETURN;
    END IF;

    IF v_lock.owner IS NOT NULL THEN
        UPDATE queue_locks q
           SET owner = NULL, log_id = NULL, expires_at = clock_timestamp()
         WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name;
        SELECT l.slot INTO v_slot FROM job_logs l WHERE l.id = v_lock.log_id;
    END IF;

    WITH closing AS (
        UPDATE job_logs l
           SET status = 'Exited', updated_time = clock_timestamp(),
               remark = l.remark || '; ' || v_note
         WHERE l.job_name = p_job_name AND l.queue_name = p_queue_name
           AND l.status = 'Processing'
        RETURNING l.id
    )
    SELECT array_agg(id ORDER BY id) INTO v_ids FROM closing;
    closed := coalesce(cardinality(v_ids), 0);

    IF v_lock.owner IS NULL AND closed = 0 THEN
        outcome := 'not_held';
        RETURN;
    END IF;

    INSERT INTO job_logs AS l (app_id, queue_name, job_name, status, remark, fence, slot)
    VALUES (p_operator, p_queue_name, p_job_name, 'Exited',
            v_note || format(' [holder %s, fence %s; closed job log %s]',
                             coalesce(holder, 'none'), coalesce(fence::text, '-'),
                             coalesce(array_to_string(v_ids, ', '), 'none')),
            v_lock.fence, v_slot)
    RETURNING l.id INTO audit_id;
    outcome := 'released';
END
$$;

-- Why a holder's row was closed under it when an operator released its lock: the operator and
-- the reason, as the row says them; NULL otherwise (taken over after its lease lapsed, or still
-- open). A holder that finds its lock gone names who released it and why.
CREATE FUNCTION dlock_operator_release_note_v1(p_log_id bigint, p_fence bigint) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT substr(l.remark, strpos(l.remark, '; Released by operator ') + 2)
      FROM job_logs l
     WHERE l.id = p_log_id AND l.fence = p_fence AND l.status = 'Exited'
       AND strpos(l.remark, '; Released by operator ') > 0
$$;

-- One batch of pruning (`dlock prune`, the retention schedule): among the next p_batch_size rows
-- after p_after_id in id order (which follows creation order), delete those created more than
-- p_older_than_seconds ago, never a Processing row (p_dry_run: count them instead). Each call is
-- a short transaction of its own, so no row lock is held for long; the caller repeats with
-- p_after_id := last_id until done: the batch was the last (short), or every row in it is
-- younger than the cutoff (so are the rows after it). The age is at least a day: a pruned Completed row lets its
-- slot run again, so a lock user may not wipe recent history.
CREATE FUNCTION dlock_prune_batch_v1(
    p_older_than_seconds double precision,
    p_after_id           bigint,
    p_batch_size         integer,
    p_dry_run            boolean,
    OUT deleted          integer,
    OUT last_id          bigint,
    OUT done             boolean
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_cutoff timestamptz;
BEGIN
    IF p_older_than_seconds IS NULL OR NOT (p_older_than_seconds >= 86400) THEN
        RAISE EXCEPTION 'the age to prune at must be at least 1 day (86400 s), got %',
            p_older_than_seconds USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_batch_size IS NULL OR NOT (p_batch_size BETWEEN 1 AND 100000) THEN
        RAISE EXCEPTION 'the batch size must be between 1 and 100000, got %', p_batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_cutoff := clock_timestamp() - make_interval(secs => p_older_than_seconds);
    WITH batch AS (
        SELECT l.id, l.created_time < v_cutoff AS aged,
               l.created_time < v_cutoff AND l.status <> 'Processing' AS old
          FROM job_logs l
         WHERE l.id > coalesce(p_after_id, 0)
         ORDER BY l.id
         LIMIT p_batch_size
    ), gone AS (
        -- Checked again on the row as it is when deleted: a Processing row never goes.
        DELETE FROM job_logs l
         USING batch b
         WHERE l.id = b.id AND b.old AND NOT p_dry_run AND l.status <> 'Processing'
        RETURNING l.id
    )
    SELECT max(b.id), count(*) < p_batch_size OR bool_and(NOT b.aged),
           CASE WHEN p_dry_run THEN count(*) FILTER (WHERE b.old)
                ELSE (SELECT count(*) FROM gone) END
      INTO last_id, done, deleted
      FROM batch b;
END
$$;

-- Like the protocol's functions (0007): they run as their owner with a pinned search_path, and
-- only the roles sql/roles.sql grants them to may call them.
DO $$
DECLARE
    v_function regprocedure;
BEGIN
    FOREACH v_function IN ARRAY ARRAY[
        'dlock_operator_release_v1(text, text, bigint, text, text)',
        'dlock_operator_release_note_v1(bigint, bigint)',
        'dlock_prune_batch_v1(double precision, bigint, integer, boolean)'
    ]::regprocedure[] LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp',
                       v_function, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_function);
    END LOOP;
END
$$;
